"""The DNS hot path: answer from the cache, fall back to the full path.

A hit on the query's exact bytes costs a dict lookup and one bytes
concatenation (the client's ID in front of the cached reply). A query whose
name is in mixed case (0x20) or whose EDNS size differs only in what cannot
change the reply is found under its folded key (`fastcache.fold`), and gets its
own spelling of the question spliced back. Anything not seen before, or not
cacheable, goes through `handler.handle`, which stays the single source of
truth: the cache only ever replays what the full path produced.

Work per query is bounded: a miss costs one resolution, whatever the answer
depends on; the variants of a random (weighted/all) answer are drawn one per
later query, not all at once.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Protocol, cast, runtime_checkable

from geodns.dns.answer import DEPENDS_CLIENT, DEPENDS_ECS, DEPENDS_RANDOM, PoolSource
from geodns.dns.fastcache import (
    PER_CLIENT_OVERHEAD,
    VARIANTS,
    Entry,
    Folded,
    PerClient,
    PerSubnet,
    Rotating,
    cased,
    fold,
    payload,
)
from geodns.dns.handler import Outcome, ServingState, Stats, handle
from geodns.dns.wire import PLAIN_UDP  # a reply this small fits every client's size

_TC = 0x02  # in the first flags byte


@runtime_checkable
class StratifiedSource(PoolSource, Protocol):
    """A pool source whose random draws can be pinned to a stratum of [0, 1), so
    the cached variants of a random answer cover the weights evenly (the edge sees
    pools only through protocols, never the steering code itself)."""

    stratum: float | None


def answer(data: bytes, source: str, udp: bool, state: ServingState, stats: Stats) -> bytes | None:
    table = state.cache.table(udp)
    key = data[2:]
    entry = table.get(key)
    if entry is None:
        return answer_entry(None, data, source, udp, state, stats)
    table.move_to_end(key)  # least recently used goes first
    if entry.__class__ is bytes:  # the common case without another call (TCP answers through here)
        stats.queries += 1
        stats.cache_hits += 1
        return data[:2] + entry
    return answer_entry(entry, data, source, udp, state, stats)


def answer_entry(
    entry: Entry | None,
    data: bytes,
    source: str,
    udp: bool,
    state: ServingState,
    stats: Stats,
    *,
    cased_tried: bool = False,
) -> bytes | None:
    """Reply from an entry the caller already looked up under the query's exact
    bytes (the UDP loop inlines that lookup, the plain-bytes case and `cased`:
    `cased_tried`), else from the folded keys, else from the full path."""
    if entry is not None:
        reply = _replay(entry, data, source, udp, state, stats)
        if reply is not None:
            return reply
    else:
        table = state.cache.table(udp)
        if data[11:12] == b"\1":  # one additional record (an OPT): maybe ECS, kept per decision
            reply = _per_subnet(table, data, state, stats)
            if reply is not None:
                return reply
        reply = None if cased_tried else cased(table, data)
        if reply is not None:
            stats.queries += 1
            stats.cache_hits += 1
            return reply
    folded = fold(data, state.edns_udp_size if udp else None)
    if folded is None:
        return handle(data, source, udp, state, stats)
    cache = state.cache
    table = cache.table(udp)
    end, ecs = folded.end, folded.ecs
    keys = [(folded.universal, 0), (folded.exact, 0)]
    if ecs:
        # Answers that do not depend on the subnet: one entry for every client address.
        keys += [(folded.universal[:-ecs], ecs), (folded.exact[:-ecs], ecs)]
    for key, strip in keys:
        entry = table.get(key)
        if entry is None:
            continue
        table.move_to_end(key)
        reply = _replay(entry, data, source, udp, state, stats, strip)
        if reply is None:
            break  # a per-client entry without this client's answer yet
        if strip:
            reply = reply[:-strip] + data[-strip:]  # the client's own subnet, echoed
            if entry.__class__ is PerSubnet and folded.aliasable and data[12:end] == reply[12:end]:
                # Next time these bytes (any address) find it without a fold.
                alias = data[2:-strip]
                if alias not in table:
                    cache.alias(udp, alias, key, entry)
        elif folded.aliasable and entry.__class__ is bytes and folded.lowered not in table:
            # The next query with these bytes, in any spelling, hits on them (or via `cased`).
            cache.alias(udp, folded.lowered, key, entry)
        if data[12:end] == reply[12:end]:
            return reply
        return reply[:12] + data[12:end] + reply[end:]  # the client's own spelling
    return _miss(data, folded, source, udp, state, stats)


def _replay(
    entry: Entry, data: bytes, source: str, udp: bool, state: ServingState, stats: Stats, ecs: int = 0
) -> bytes | None:
    if entry.__class__ is bytes:
        stats.queries += 1
        stats.cache_hits += 1
        return data[:2] + entry
    if entry.__class__ is PerSubnet:
        if not ecs:
            return None
        steered = _subnet_key(state, data, ecs)
        kept = entry.by_key.get(steered)
        if kept is None or kept.__class__ is not bytes:
            return None
        stats.queries += 1
        stats.cache_hits += 1
        _count(stats, steered)
        return data[:2] + kept
    if entry.__class__ is PerClient:
        steered = _client_key(state, source)
        found = entry.by_key.get(steered)
        if found is None:
            return None
        _count(stats, steered)
        if found.__class__ is bytes:
            stats.queries += 1
            stats.cache_hits += 1
            return data[:2] + found
        entry = found
    assert isinstance(entry, Rotating)
    if not entry.complete():
        return _draw_more(entry, data, source, udp, state, stats)
    stats.queries += 1
    stats.cache_hits += 1
    return data[:2] + entry.next()


def _per_subnet(
    table: OrderedDict[bytes, Entry], data: bytes, state: ServingState, stats: Stats
) -> bytes | None:
    """A geo ECS reply kept per decision, found under the query's own bytes minus its
    address (the alias its first fold left), for the two subnets resolvers send:
    IPv4 /24 and IPv6 /56 (3 and 7 address bytes). The key holds the option's
    header, so finding an entry means that header was checked when it was made;
    only stray bits past the prefix remain to refuse (the full path: FORMERR)."""
    for size in (3, 7):
        entry = table.get(data[2:-size])
        if entry.__class__ is PerSubnet:
            if data[-1] & (0xFF >> (data[-size - 2] % 8 or 8)):
                return None
            steered = _subnet_key(state, data, size)
            kept = entry.by_key.get(steered)
            if kept.__class__ is not bytes:
                return None
            stats.queries += 1
            stats.cache_hits += 1
            _count(stats, steered)
            return data[:2] + kept[:-size] + data[-size:]
    return None


def _keep(
    state: ServingState,
    table: OrderedDict[bytes, Entry],
    key: bytes,
    kind: type[PerClient],
    steered: int,
    value: bytes | Rotating,
    stats: Stats,
) -> None:
    """An answer kept per decision (geo: by subnet or by source) under `key`."""
    cache = state.cache
    entry = table.get(key)
    if entry.__class__ is not kind:
        entry = kind()
        cache.put(table, key, entry)
    assert isinstance(entry, PerClient)
    old = entry.by_key.get(steered)
    if old is not None:
        cache.used -= payload(old) + PER_CLIENT_OVERHEAD
    entry.by_key[steered] = value
    cache.grew(payload(value) + PER_CLIENT_OVERHEAD)
    _count(stats, steered)


def _count(stats: Stats, steered: int) -> None:
    """One answer a geo decision shaped, by its key (rule, order, scope): the
    metrics name the rule and the datacenter it led with."""
    geo = stats.geo
    geo[steered] = geo.get(steered, 0) + 1


def _subnet_key(state: ServingState, data: bytes, ecs: int) -> int:
    """The decision key of the query's ECS subnet (its last `ecs` bytes, the family
    just before its prefix and scope), remembered per subnet."""
    raw = data[-ecs - 4 :]
    keys = state.cache.subnet_keys
    key = keys.get(raw)
    if key is None:
        if len(keys) >= 262_144:  # ~25 MB at most, then start over
            keys.clear()
        v6 = data[-ecs - 3] == 2
        address = bytes(data[-ecs:]).ljust(16 if v6 else 4, b"\0")
        ip = ipaddress.IPv6Address(address) if v6 else ipaddress.IPv4Address(address)
        key = keys[raw] = state.pools.subnet_key(ip)
    return key


def _client_key(state: ServingState, source: str) -> int:
    keys = state.cache.client_keys
    key = keys.get(source)
    if key is None:
        if len(keys) >= 65536:
            keys.clear()
        key = keys[source] = state.pools.client_key(source)
    return key


_STRATIFIED: dict[type, bool] = {}


def _stratified(pools: PoolSource) -> bool:
    """isinstance() against a runtime-checkable protocol inspects the object's
    attributes every time (a third of a miss's cost): once per class is enough."""
    kind = type(pools)
    found = _STRATIFIED.get(kind)
    if found is None:
        found = _STRATIFIED[kind] = isinstance(pools, StratifiedSource)
    return found


def _van_der_corput(j: int) -> float:
    """0, 1/2, 1/4, 3/4, 1/8, ...: evenly spread, and any run of them spread too."""
    out, denom = 0.0, 1.0
    while j:
        denom *= 2
        j, bit = divmod(j, 2)
        out += bit / denom
    return out


def _stratum(j: int) -> float:
    return _van_der_corput(j) + 0.5 / VARIANTS


def _resolve(
    data: bytes, source: str, udp: bool, state: ServingState, stats: Stats, outcome: Outcome, j: int
) -> bytes | None:
    """The full path, with random draws pinned to stratum `j`: the variants'
    first draws cover [0, 1) evenly, in an order where consecutive variants are
    far apart, so served in turn they follow the pool's weights exactly."""
    pools = state.pools
    if not _stratified(pools):
        return handle(data, source, udp, state, stats, outcome)
    stratified = cast(StratifiedSource, pools)  # known from its class
    stratified.stratum = _stratum(j)
    try:
        return handle(data, source, udp, state, stats, outcome)
    finally:
        stratified.stratum = None


def _draw_more(
    entry: Rotating, data: bytes, source: str, udp: bool, state: ServingState, stats: Stats
) -> bytes | None:
    """One more variant of a random answer, drawn for this query and kept."""
    outcome = Outcome()
    reply = _resolve(data, source, udp, state, stats, outcome, len(entry.replies))
    folded = fold(data, None)
    if reply is not None and outcome.cacheable and folded is not None:
        stored = _stored(reply, folded)
        if stored is not None:
            entry.replies.append(stored)
            entry.size += len(stored)
            state.cache.grew(len(stored))
    return reply


def _stored(reply: bytes, folded: Folded) -> bytes | None:
    """The reply as kept: without its ID, the question in lower case. None when the
    reply does not carry the query's question where the key says (never cached)."""
    end = folded.end
    if len(reply) <= end:
        return None
    name = reply[12:end].lower()
    if name != folded.universal[10 : 10 + len(name)]:
        return None
    return reply[2:12] + name + reply[end:]


def _miss(
    data: bytes, folded: Folded, source: str, udp: bool, state: ServingState, stats: Stats
) -> bytes | None:
    outcome = Outcome()
    reply = _resolve(data, source, udp, state, stats, outcome, 0)
    if reply is None or not outcome.cacheable:
        return reply
    stored = _stored(reply, folded)
    if stored is None:
        return reply
    # A small, complete UDP reply fits every client's size; TCP never truncates.
    fits_all = not udp or (len(reply) <= PLAIN_UDP and not reply[2] & _TC)
    key = folded.universal if fits_all else folded.exact
    ecs = folded.ecs
    if ecs and not outcome.depends & (DEPENDS_ECS | DEPENDS_CLIENT) and reply.endswith(data[-ecs:]):
        # The subnet shaped nothing but the ECS option echoed at the reply's end.
        key = key[:-ecs]
    value: bytes | Rotating = stored
    if outcome.depends & DEPENDS_RANDOM and not reply[2] & _TC:
        # A truncated reply sends the resolver to TCP, its records unused: one is enough.
        value = Rotating(stored)
    cache = state.cache
    table: OrderedDict[bytes, Entry] = cache.table(udp)
    if (
        ecs
        and outcome.depends & DEPENDS_ECS
        and not outcome.depends & (DEPENDS_CLIENT | DEPENDS_RANDOM)
        and reply.endswith(data[-ecs:])
    ):
        # A geo answer for this subnet: kept per decision, the address stripped.
        key = key[:-ecs]
        _keep(state, table, key, PerSubnet, _subnet_key(state, data, ecs), stored, stats)
    elif outcome.depends & DEPENDS_CLIENT:
        _keep(state, table, key, PerClient, _client_key(state, source), value, stats)
    else:
        cache.put(table, key, value)
    if outcome.pools:
        cache.depend(udp, key, outcome.pools)
    return reply
