"""Which topology rule a geo pool's client falls under (pure): subnet rules by
longest prefix, then what the GeoIP databases say (subdivision, country,
continent, ASN, default), the datacenter order the rule leads with (its list, or
the nearest ones), and the ECS scope over which all of that holds."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from geodns.config.model import Config, TopologyRule
from geodns.geoip.info import GeoInfo, distance_km

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# Subnet rules as integers, per rule list (a config's topology): the match runs for
# every client the answer cache has not seen, so it does no object work per rule.
_SUBNETS: dict[int, tuple[Sequence[TopologyRule], list[tuple[int, int, int, TopologyRule]]]] = {}


def _subnets(rules: Sequence[TopologyRule]) -> list[tuple[int, int, int, TopologyRule]]:
    found = _SUBNETS.get(id(rules))
    if found is not None and found[0] is rules:
        return found[1]
    if len(_SUBNETS) > 16:
        _SUBNETS.clear()
    prepared: list[tuple[int, int, int, TopologyRule]] = [
        (r.match.version, int(r.match.network_address), r.match.prefixlen, r)
        for r in rules
        if r.match is not None
    ]
    _SUBNETS[id(rules)] = (rules, prepared)  # the rules kept with it: their id stays theirs
    return prepared


def match_rule(rules: Sequence[TopologyRule], address: IPAddress) -> tuple[TopologyRule | None, int]:
    """Longest-prefix match, and the ECS scope over which that result is the same
    for every address: long enough to exclude each more specific rule the client
    is not in (RFC 7871 7.2.1)."""
    nets = _subnets(rules)
    if not nets:
        return None, 0
    version, bits, width = address.version, int(address), address.max_prefixlen
    best: TopologyRule | None = None
    best_len = -1
    for v, net, plen, rule in nets:
        if v == version and plen > best_len and (bits ^ net) >> (width - plen) == 0:
            best, best_len = rule, plen
    scope = max(best_len, 0)
    for v, net, plen, _rule in nets:
        if v != version or plen <= scope or (bits ^ net) >> (width - plen) == 0:
            continue
        # The shortest prefix of the client that no longer contains this subnet.
        common = width - (bits ^ net).bit_length()
        if common >= scope:
            scope = max(scope, min(common + 1, plen))
    return best, scope


Geo = Callable[[IPAddress], GeoInfo]  # what the GeoIP databases say of an address


@dataclass(frozen=True)
class GeoChoice:
    """Which topology rule a client falls under, the ECS scope over which that holds,
    and the datacenter order it leads with (empty: the pool's own)."""

    rule: TopologyRule | None
    scope: int
    order: tuple[str, ...] = ()
    info: GeoInfo | None = None
    distances: tuple[tuple[str, float], ...] = ()  # nearest rules: km to each datacenter

    @property
    def key(self) -> tuple[int, int, tuple[str, ...]]:
        return (id(self.rule) if self.rule is not None else 0, self.scope, self.order)


def steering_label(config: Config, key: int) -> tuple[str, str]:
    """(rule, datacenter it leads with) for a decision key of PolicySource (the
    inverse of its encoding: order digits, rule index, scope, family)."""
    key //= 2 * 256  # the family bit and the scope
    rule_index, order = key % 4096, key // 4096
    rule = config.topology[rule_index - 1].describe() if 0 < rule_index <= len(config.topology) else "none"
    base = len(config.datacenters) + 1
    first = 0
    while order:
        order, first = divmod(order, base)
        if not order:
            break
    dc = config.datacenters[first - 1].name if 0 < first <= len(config.datacenters) else "pool order"
    return rule, dc


def geo_rule(rules: Sequence[TopologyRule], info: GeoInfo) -> TopologyRule | None:
    """The first rule of the most specific kind that matches: subdivision, country,
    continent, ASN, then the default."""
    tests = (
        lambda r: bool(r.subdivisions.intersection(info.subdivisions)),
        lambda r: info.country is not None and info.country in r.countries,
        lambda r: info.continent is not None and info.continent in r.continents,
        lambda r: info.asn is not None and info.asn in r.asns,
        lambda r: r.default,
    )
    for test in tests:
        for rule in rules:
            if rule.match is None and test(rule):
                return rule
    return None


def geo_choice(
    config: Config,
    client: IPAddress,
    geo: Geo | None,
    memo: dict[tuple[GeoInfo, int], GeoChoice] | None = None,
) -> GeoChoice:
    """Subnet rules first (longest prefix); else what the databases say, under the
    precedence of geo_rule. The scope is never shorter than the database network
    the answer came from, nor than what excludes each subnet rule the client is not
    in: every address inside it gets the same choice."""
    rule, scope = match_rule(config.topology, client)
    info = None
    if rule is None:
        info = geo(client) if geo is not None else GeoInfo()
        scope = max(scope, info.prefix)
        if memo is not None:
            # The same database answer and scope: the same choice (many subnets, one network).
            found = memo.get((info, scope))
            if found is None:
                if len(memo) >= 65_536:
                    memo.clear()
                found = memo[(info, scope)] = geo_choice_for(config, info, scope)
            return found
        return geo_choice_for(config, info, scope)
    return _chosen(config, rule, scope, info)


def geo_choice_for(config: Config, info: GeoInfo, scope: int) -> GeoChoice:
    return _chosen(config, geo_rule(config.topology, info), scope, info)


def _chosen(config: Config, rule: TopologyRule | None, scope: int, info: GeoInfo | None) -> GeoChoice:
    if rule is None:
        return GeoChoice(None, scope, (), info)
    if not rule.nearest:
        return GeoChoice(rule, scope, rule.prefer, info)
    if info is None or info.location is None:
        return GeoChoice(rule, scope, (), info)  # nowhere known: the pool's own order
    here = info.location
    distances = tuple(
        sorted(
            (
                (dc.name, distance_km(here, dc.location))
                for dc in config.datacenters
                if dc.location is not None
            ),
            key=lambda pair: pair[1],
        )
    )
    return GeoChoice(rule, scope, tuple(name for name, _ in distances), info, distances)
