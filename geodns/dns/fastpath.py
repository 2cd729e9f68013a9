"""The DNS hot path: answer from the cache, fall back to the full path.

A hit costs a dict lookup and one bytes concatenation (the client's ID in
front of the cached reply). Anything not seen before, or not cacheable, goes
through `handler.handle`, which stays the single source of truth: the cache
only ever replays what the full path produced for the same bytes.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from geodns.dns.answer import DEPENDS_CLIENT, DEPENDS_RANDOM, PoolSource
from geodns.dns.fastcache import VARIANTS, Entry, PerClient, Rotating
from geodns.dns.handler import Outcome, ServingState, Stats, handle


@runtime_checkable
class StratifiedSource(PoolSource, Protocol):
    """A pool source whose random draws can be pinned to a stratum of [0, 1), so
    the cached variants of a random answer cover the weights evenly (the edge sees
    pools only through protocols, never the steering code itself)."""

    stratum: float | None


def answer(data: bytes, source: str, udp: bool, state: ServingState, stats: Stats) -> bytes | None:
    cache = state.cache
    return answer_entry((cache.udp if udp else cache.tcp).get(data[2:]), data, source, udp, state, stats)


def answer_entry(
    entry: Entry | None, data: bytes, source: str, udp: bool, state: ServingState, stats: Stats
) -> bytes | None:
    """Reply from an entry the caller already looked up (the UDP loop inlines the
    lookup and the plain-bytes case), or from the full path on a miss."""
    if entry is not None:
        if entry.__class__ is bytes:
            stats.queries += 1
            stats.cache_hits += 1
            return data[:2] + entry
        if entry.__class__ is Rotating:
            stats.queries += 1
            stats.cache_hits += 1
            return data[:2] + entry.next()
        assert isinstance(entry, PerClient)
        found = entry.by_key.get(_client_key(state, source))
        if found is not None:
            stats.queries += 1
            stats.cache_hits += 1
            return data[:2] + (found if found.__class__ is bytes else found.next())  # type: ignore[union-attr]
    return _miss(data, source, udp, state, stats)


def _client_key(state: ServingState, source: str) -> int:
    keys = state.cache.client_keys
    key = keys.get(source)
    if key is None:
        if len(keys) >= 65536:
            keys.clear()
        key = keys[source] = state.pools.client_key(source)
    return key


def _van_der_corput(j: int) -> float:
    """0, 1/2, 1/4, 3/4, 1/8, ...: evenly spread, and any run of them spread too."""
    out, denom = 0.0, 1.0
    while j:
        denom *= 2
        j, bit = divmod(j, 2)
        out += bit / denom
    return out


def _variants(data: bytes, source: str, udp: bool, state: ServingState) -> list[bytes]:
    """VARIANTS real answers from the full path whose first draws cover [0, 1)
    evenly, in an order where consecutive variants are far apart: served in turn
    they follow the pool's weights exactly, without runs of one member."""
    pools = state.pools
    if not isinstance(pools, StratifiedSource):
        return [r[2:] for r in [handle(data, source, udp, state, Stats(), Outcome())] if r is not None]
    variants = []
    try:
        for j in range(VARIANTS):
            pools.stratum = _van_der_corput(j) + 0.5 / VARIANTS
            extra = handle(data, source, udp, state, Stats(), Outcome())
            if extra is not None:
                variants.append(extra[2:])
    finally:
        pools.stratum = None
    return variants


def _miss(data: bytes, source: str, udp: bool, state: ServingState, stats: Stats) -> bytes | None:
    outcome = Outcome()
    reply = handle(data, source, udp, state, stats, outcome)
    if reply is None or not outcome.cacheable:
        return reply
    value: bytes | Rotating = reply[2:]
    if outcome.depends & DEPENDS_RANDOM:
        value = Rotating(_variants(data, source, udp, state))
    table = state.cache.table(udp)
    if outcome.depends & DEPENDS_CLIENT:
        entry = table.get(data[2:])
        if not isinstance(entry, PerClient):
            entry = table[data[2:]] = PerClient()
        entry.by_key[_client_key(state, source)] = value
    else:
        table[data[2:]] = value
    return reply
