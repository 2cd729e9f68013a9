"""Pool selection (pure): which members a pool-backed record answers.

Policies read one health snapshot (real states plus operator overrides):
- failover: datacenters in preference order; the healthy members of the first
  one with at least `min_healthy` healthy members.
- weighted: up to `max_answers` (default 1) healthy members drawn by weight;
  weight 0 members are standbys, used only when no weighted member is healthy.
- all: every healthy member, shuffled, up to `max_answers`.
- geo: the client's subnet (EDNS Client Subnet, else the source address) picks
  a topology rule (longest prefix wins), whose `prefer` list leads the
  datacenter order; then as failover. The reply's ECS scope is the prefix
  length over which that choice holds, never a copy of the source prefix.
When no member is healthy the pool's `fallback` decides: all (fail open),
empty (NODATA), servfail, or pool:<name>.

Randomness (weighted, all) comes from an injected `random.Random`.
"""

from __future__ import annotations

import heapq
import ipaddress
import math
import random
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from geodns.config.model import Config, Member, Pool, TopologyRule
from geodns.dns.answer import DEPENDS_CLIENT, DEPENDS_RANDOM, Client, PoolResult
from geodns.geoip.info import GeoInfo
from geodns.health.health import UNKNOWN_HEALTH, ProbeKey, Status, probe_key
from geodns.health.overrides import Override, forced
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.geochoice import Geo, GeoChoice, geo_choice
from geodns.zone.zone import Address, PoolRRset, RRset, RType

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AllMembers:
    """Answers every member of the pool with the record's address family (zone export)."""

    def __init__(self, pools: Mapping[str, Pool]) -> None:
        self._addresses: dict[tuple[str, int], tuple[Address, ...]] = {}
        for pool in pools.values():
            for rtype, v6 in ((int(RType.A), False), (int(RType.AAAA), True)):
                self._addresses[(pool.name, rtype)] = tuple(
                    Address(m.address) for m in pool.members if m.is_v6 == v6
                )

    def client_key(self, source: str) -> int:
        return 0  # answers never depend on the client

    def subnet_key(self, address: IPAddress) -> int:
        return 0

    def select(self, entry: PoolRRset, client: Client) -> PoolResult:
        rdatas = self._addresses.get((entry.pool, entry.rtype), ())
        return PoolResult(RRset(entry.name, entry.rtype, entry.ttl, rdatas))


class MemberView(NamedTuple):
    """One member as a decision sees it (a named tuple: a decision builds one per
    member, and a 1,000-member pool must decide in well under a millisecond)."""

    member: Member
    real: Status  # what the probes say
    effective: Status  # what answers use: the override's state when one applies
    forced_by: Override | None

    @property
    def up(self) -> bool:
        return self.effective is Status.UP


@dataclass(frozen=True)
class Decision:
    """Everything that shaped one pool's answer, for answers and for `explain`."""

    pool: Pool
    v6: bool
    members: tuple[MemberView, ...]  # of the asked family, in config order
    preference: tuple[str, ...]
    rule: TopologyRule | None = None
    scope: int | None = None  # ECS scope prefix (geo only)
    chosen_dc: str | None = None
    candidates: tuple[Member, ...] = ()  # what the answer is drawn from
    fallback: str | None = None  # set when no member was healthy
    servfail: bool = False
    degraded: bool = False
    via: Decision | None = None  # the decision of a pool:<name> fallback
    choice: GeoChoice | None = None  # geo pools: the rule, scope and order, and why
    notes: tuple[str, ...] = field(default=())

    def final(self) -> Decision:
        return self.via.final() if self.via is not None else self


_ADDRESSES: dict[str, Address] = {}


def _address(text: str) -> Address:
    """One Address object per member address, made once (answers hold them by the
    thousand; a frozen dataclass costs a microsecond to build)."""
    found = _ADDRESSES.get(text)
    if found is None:
        if len(_ADDRESSES) > 1_000_000:  # reloads with ever-new addresses: start over
            _ADDRESSES.clear()
        found = _ADDRESSES[text] = Address(text)
    return found


# Probe keys per pool, computed once per loaded config (a decision reads every
# member's state; building 1,000 keys per decision was most of its cost).
_POOL_KEYS: dict[int, dict[str, tuple[ProbeKey | None, ...]]] = {}


def pool_keys(config: Config, pool: Pool) -> tuple[ProbeKey | None, ...]:
    per_pool = _POOL_KEYS.get(id(config))
    if per_pool is None:
        per_pool = _POOL_KEYS[id(config)] = {}
        weakref.finalize(config, _POOL_KEYS.pop, id(config), None)
    keys = per_pool.get(pool.name)
    if keys is None or len(keys) != len(pool.members):
        keys = per_pool[pool.name] = tuple(probe_key(pool, m, config.checks) for m in pool.members)
    return keys


def member_views(pool: Pool, config: Config, snapshot: HealthSnapshot) -> list[MemberView]:
    return list(iter_member_views(pool, config, snapshot))


def iter_member_views(pool: Pool, config: Config, snapshot: HealthSnapshot) -> Iterator[MemberView]:
    """The views one at a time (the status document is rendered in steps)."""
    states, overrides = snapshot.states, snapshot.overrides
    up = Status.UP
    for member, key in zip(pool.members, pool_keys(config, pool), strict=True):
        real = up if key is None else states.get(key, UNKNOWN_HEALTH).status
        override = forced(overrides, pool, member) if overrides else None
        yield MemberView(member, real, override.state if override else real, override)


def decide(
    config: Config,
    snapshot: HealthSnapshot,
    pool_name: str,
    v6: bool,
    client: IPAddress | None,
    _seen: tuple[str, ...] = (),
    *,
    rule: TopologyRule | None = None,
    views: Sequence[MemberView] | None = None,
    choice: GeoChoice | None = None,
    geo: Geo | None = None,
) -> Decision:
    """One pool's decision for one address family and client. `rule`, given
    instead of a client, decides a geo pool as for a client of that rule;
    `views`, the pool's member views under `snapshot` when already known."""
    pool = config.pools[pool_name]
    if views is None:
        views = member_views(pool, config, snapshot)
    up = Status.UP
    degraded = any(v.effective is not up for v in views)
    family = tuple(v for v in views if v.member.is_v6 == v6)
    preference = pool.datacenters
    scope = None
    if pool.policy == "geo" and (client is not None or rule is not None):
        order = rule.prefer if rule is not None else ()
        if client is not None:
            choice = choice or geo_choice(config, client, geo)
            rule, scope, order = choice.rule, choice.scope, choice.order
        if order:
            preference = tuple(
                dict.fromkeys([*(d for d in order if d in pool.datacenters), *pool.datacenters])
            )
    base = Decision(pool, v6, family, preference, rule, scope, degraded=degraded, choice=choice)
    healthy = [v.member for v in family if v.effective is up]

    if pool.policy in ("failover", "geo"):
        for minimum in (pool.min_healthy, None):  # then any healthy datacenter at all
            for dc in preference:
                in_dc = [v for v in family if v.member.dc == dc]
                live = tuple(v.member for v in in_dc if v.effective is up)
                if in_dc and (minimum.satisfied(len(live), len(in_dc)) if minimum else bool(live)):
                    notes = () if minimum else (f"no datacenter met min_healthy; {dc} has {len(live)} up",)
                    return replace(base, chosen_dc=dc, candidates=live, notes=notes)
    elif healthy:
        weighted = tuple(m for m in healthy if m.weight > 0 or pool.policy == "all")
        return replace(
            base,
            candidates=weighted or tuple(healthy),
            notes=() if weighted else ("only standby (weight 0) members are up",),
        )

    # Nothing healthy: the fallback decides.
    fallback = pool.fallback
    if fallback == "servfail":
        return replace(base, fallback=fallback, servfail=True)
    if fallback == "empty":
        return replace(base, fallback=fallback)
    if fallback.startswith("pool:") and fallback[5:] not in _seen:
        via = decide(config, snapshot, fallback[5:], v6, client, (*_seen, pool_name), choice=choice, geo=geo)
        return replace(base, fallback=fallback, via=via)
    return replace(base, fallback="all", candidates=tuple(v.member for v in family))


def _draw(
    candidates: Sequence[Member], weights: Sequence[float], k: int, rng: random.Random, first: float | None
) -> tuple[Member, ...]:
    """k members without replacement, each draw proportional to weight, in
    O(n log k) whatever the pool's size (successive roulette was O(n k): 28 ms for
    an `all` pool of 1,000). The first member comes from one roulette draw over
    the cumulative weights, using `first` when given: the answer cache passes
    evenly spread values so its few variants follow the weights exactly instead of
    by luck. With unequal weights the rest are the k-1 largest keys u**(1/w)
    (Efraimidis-Spirakis), the same distribution as drawing them one by one."""
    n = len(candidates)
    if n == 0 or k <= 0:
        return ()
    total = math.fsum(weights)
    x = (rng.random() if first is None else first) * total
    index = n - 1
    for i, w in enumerate(weights):
        x -= w
        if x < 0:
            index = i
            break
    if k == 1:
        return (candidates[index],)
    if len(set(weights)) == 1:
        # Equal weights (`all` pools): a plain sample of the others, O(k).
        others = rng.sample(range(n - 1), min(k - 1, n - 1))
        return (candidates[index], *(candidates[i + (i >= index)] for i in others))
    keyed = (
        (rng.random() ** (1.0 / weights[i]) if weights[i] > 0 else -1.0, i) for i in range(n) if i != index
    )
    chosen = [i for _, i in heapq.nlargest(k - 1, keyed)]
    return (candidates[index], *(candidates[i] for i in chosen))


def pick(decision: Decision, rng: random.Random, first: float | None = None) -> tuple[Member, ...]:
    """The members to answer, drawn per query for weighted and all pools."""
    d = decision.final()
    pool, candidates = d.pool, d.candidates
    if pool.policy == "weighted" and d.fallback is None:
        k = min(pool.max_answers or 1, len(candidates))
        weights = [float(m.weight) for m in candidates]
        if not any(weights):  # only standbys are up: all alike
            weights = [1.0] * len(candidates)
        return _draw(candidates, weights, k, rng, first)
    if pool.policy == "all" and d.fallback is None:
        k = min(pool.max_answers or len(candidates), len(candidates))
        return _draw(candidates, [1.0] * len(candidates), k, rng, first)
    return candidates


def ttl_for(entry: PoolRRset, decision: Decision) -> int:
    pool = decision.pool
    if decision.degraded and pool.degraded_ttl is not None:
        return min(entry.ttl, pool.degraded_ttl)
    return entry.ttl


class PolicySource:
    """The PoolSource DNS answers use: decisions cached per snapshot (which never
    changes), random draws per query."""

    def __init__(
        self,
        config: Config,
        snapshot: HealthSnapshot,
        rng: random.Random | None = None,
        geo: Geo | None = None,
        choices: dict[tuple[GeoInfo, int], GeoChoice] | None = None,
    ) -> None:
        self.config = config
        self.snapshot = snapshot
        self.rng = rng or random.Random()  # load spreading, not security
        self.geo = geo
        self._cache: dict[tuple[str, bool, tuple[int, int, tuple[str, ...]] | None], Decision] = {}
        # Geo choices depend on the config and the database, never on health: the
        # next snapshot's source gets the same dict (a flap storm keeps them).
        self.choices = {} if choices is None else choices
        self._rule_index = {id(r): i + 1 for i, r in enumerate(config.topology)}
        self._dc_index = {dc.name: i for i, dc in enumerate(config.datacenters)}
        self._geo_pools = {name for name, p in config.pools.items() if p.policy == "geo"}
        self.stratum: float | None = None  # set by the answer cache while it draws variants
        # Every address the pool may answer now instead of one draw (`geodns hosts`).
        self.every_candidate = False

    def decision(self, pool: str, v6: bool, client: Client) -> Decision:
        address: IPAddress | None = None
        choice: GeoChoice | None = None
        if pool in self._geo_pools:
            use_ecs = self.config.pools[pool].ecs == "use"
            if use_ecs and client.ecs_ip is not None:
                address = client.ecs_ip
            else:
                text = client.address if (use_ecs or client.ecs_prefix is None) else client.source
                try:
                    address = ipaddress.ip_address(text)
                except ValueError:
                    address = None
            if address is not None:
                choice = geo_choice(self.config, address, self.geo, self.choices)
        key = (pool, v6, choice.key if choice is not None else None)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = decide(
                self.config, self.snapshot, pool, v6, address, choice=choice, geo=self.geo
            )
        return found

    def decided(self) -> list[Decision]:
        """The decisions made so far with this source (one snapshot)."""
        return list(self._cache.values())

    def subnet_key(self, address: IPAddress) -> int:
        """The same key for an ECS client's address (with its scope: the cached reply
        carries it)."""
        return self._choice_key(address)

    def client_key(self, source: str) -> int:
        """Which topology rule (and scope) a source address falls in: answers that
        depend on the source are the same for every address with the same key."""
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return -1
        return self._choice_key(address)

    def _choice_key(self, address: IPAddress) -> int:
        # The answer cache keeps these keys across snapshots: they must mean the same
        # choice for every source built from this config, so they encode it exactly
        # (rule index, scope, and the datacenter order as digits), never a counter.
        choice = geo_choice(self.config, address, self.geo, self.choices)
        rule = self._rule_index.get(id(choice.rule), 0) if choice.rule is not None else 0
        order = 0
        for dc in choice.order:
            order = order * (len(self._dc_index) + 1) + self._dc_index.get(dc, 0) + 1
        return ((order * 4096 + rule) * 256 + choice.scope) * 2 + (address.version == 6)

    def select(self, entry: PoolRRset, client: Client) -> PoolResult:
        d = self.decision(entry.pool, entry.rtype == RType.AAAA, client)
        scope = (
            d.scope
            if d.pool.policy == "geo" and d.pool.ecs == "use" and client.ecs_prefix is not None
            else None
        )
        via = _via(d)
        if d.final().servfail:
            return PoolResult(None, servfail=True, ecs_scope=scope, via=via)
        members = d.final().candidates if self.every_candidate else pick(d, self.rng, self.stratum)
        rdatas = tuple(map(_address, (m.address for m in members)))
        depends = 0
        final = d.final()
        if final.pool.policy in ("weighted", "all") and final.fallback is None and len(final.candidates) > 1:
            depends |= DEPENDS_RANDOM
        if d.pool.policy == "geo" and (d.pool.ecs == "ignore" or client.ecs_prefix is None):
            depends |= DEPENDS_CLIENT
        return PoolResult(
            RRset(entry.name, entry.rtype, ttl_for(entry, d), rdatas),
            ecs_scope=scope,
            depends=depends,
            via=via,
        )


def _via(decision: Decision) -> tuple[str, ...]:
    """The fallback pools a decision went through (usually none)."""
    via: tuple[str, ...] = ()
    d = decision.via
    while d is not None:
        via += (d.pool.name,)
        d = d.via
    return via
