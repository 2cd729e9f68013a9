"""Which pools' answers a new health snapshot changes (pure).

The answer cache keeps every answer across snapshots except those shaped by a
pool whose decision changed: in a flap storm, static names and the pools that
are not flapping stay cached. A decision "changes" when what it answers
changes: the datacenter chosen, the members answered from, the fallback taken,
or the TTL (degraded_ttl). A standby datacenter's member flapping behind a
healthy primary changes nothing anyone is told.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable, Mapping

from geodns.config.model import Config, TopologyRule
from geodns.health.health import UNKNOWN_HEALTH, Health, ProbeKey
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import Decision, decide, iter_member_views, pool_keys

# Beyond this many distinct `prefer` lists, a geo pool's signature is its members'
# statuses (deciding per list would cost more than the answers it keeps).
MAX_GEO_PREFERENCES = 64

_POOLS_BY_KEY: dict[int, dict[ProbeKey, tuple[str, ...]]] = {}


def _pools_by_key(config: Config) -> dict[ProbeKey, tuple[str, ...]]:
    """Which pools read each probe key (one check can serve several pools)."""
    index = _POOLS_BY_KEY.get(id(config))
    if index is None:
        building: dict[ProbeKey, list[str]] = {}
        for pool in config.pools.values():
            for key in pool_keys(config, pool):
                if key is not None:
                    building.setdefault(key, []).append(pool.name)
        index = _POOLS_BY_KEY[id(config)] = {k: tuple(v) for k, v in building.items()}
        weakref.finalize(config, _POOLS_BY_KEY.pop, id(config), None)
    return index


def changed_keys(old: Mapping[ProbeKey, Health], new: Mapping[ProbeKey, Health]) -> set[ProbeKey]:
    """Probe keys whose status differs (a new reason or time alone changes no answer)."""
    if old is new:
        return set()
    changed = {k for k, h in new.items() if old.get(k, UNKNOWN_HEALTH).status is not h.status}
    changed.update(k for k, h in old.items() if k not in new and h.status is not UNKNOWN_HEALTH.status)
    return changed


def changed_pools(config: Config, old: HealthSnapshot, new: HealthSnapshot) -> set[str]:
    """The pools whose answers may differ between `old` and `new`."""
    if old.overrides != new.overrides:
        candidates: set[str] = set(config.pools)  # an operator's drain: rare, check them all
    else:
        index = _pools_by_key(config)
        candidates = {pool for key in changed_keys(old.states, new.states) for pool in index.get(key, ())}
    return {name for name in candidates if signature(config, old, name) != signature(config, new, name)}


def signature(config: Config, snapshot: HealthSnapshot, pool_name: str) -> Hashable:
    """What a pool answers under `snapshot`, for every address family and, for geo
    pools, every preference order a topology rule can give."""
    pool = config.pools[pool_name]
    rules: list[TopologyRule | None] = [None]
    if pool.policy == "geo":
        distinct = {rule.prefer: rule for rule in config.topology}
        if len(distinct) > MAX_GEO_PREFERENCES:
            return _statuses(config, snapshot, pool_name)
        rules += distinct.values()
    return tuple(
        _outcome(decide(config, snapshot, pool_name, v6, None, rule=rule))
        for v6 in (False, True)
        for rule in rules
    )


def _outcome(d: Decision) -> Hashable:
    ttl_changes = d.degraded and d.pool.degraded_ttl is not None
    return (d.chosen_dc, d.candidates, d.fallback, d.servfail, ttl_changes)


def _statuses(config: Config, snapshot: HealthSnapshot, pool_name: str) -> Hashable:
    return tuple(v.effective for v in iter_member_views(config.pools[pool_name], config, snapshot))
