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
from collections import OrderedDict
from collections.abc import Hashable, Mapping

from geodns.config.model import Config, TopologyRule
from geodns.health.health import UNKNOWN_HEALTH, Health, ProbeKey
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import Decision, decide, member_views, pool_keys

# Beyond this many distinct `prefer` lists, a geo pool's signature is its members'
# statuses (deciding per list would cost more than the answers it keeps).
MAX_GEO_PREFERENCES = 64

REMEMBERED_SNAPSHOTS = 4  # whose signatures are kept (each holds its snapshot alive)

_POOLS_BY_KEY: dict[int, dict[ProbeKey, tuple[str, ...]]] = {}
_SIGNATURES: OrderedDict[int, tuple[HealthSnapshot, dict[tuple[int, str], Hashable]]] = OrderedDict()


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
    pools, every preference order a topology rule can give. Remembered for the
    last snapshots: in a flap storm each one is compared with the next."""
    remembered = _SIGNATURES.get(id(snapshot))
    if remembered is None or remembered[0] is not snapshot:
        if len(_SIGNATURES) >= REMEMBERED_SNAPSHOTS:
            _SIGNATURES.popitem(last=False)
        remembered = _SIGNATURES[id(snapshot)] = (snapshot, {})
    key = (id(config), pool_name)
    if key in remembered[1]:
        return remembered[1][key]
    pool = config.pools[pool_name]
    views = member_views(pool, config, snapshot)
    rules: list[TopologyRule | None] = [None]
    made: Hashable
    # `nearest` orders datacenters per client location: any order can arise, so a
    # geo pool under such a rule changes whenever one of its members' states does.
    nearest = any(rule.nearest for rule in config.topology)
    if pool.policy == "geo" and (
        nearest or len({rule.prefer for rule in config.topology}) > MAX_GEO_PREFERENCES
    ):
        made = tuple(v.effective for v in views)
    else:
        if pool.policy == "geo":
            rules += {rule.prefer: rule for rule in config.topology}.values()
        made = tuple(
            _outcome(decide(config, snapshot, pool_name, v6, None, rule=rule, views=views))
            for v6 in (False, True)
            for rule in rules
        )
    remembered[1][key] = made
    return made


def _outcome(d: Decision) -> Hashable:
    ttl_changes = d.degraded and d.pool.degraded_ttl is not None
    return (d.chosen_dc, d.candidates, d.fallback, d.servfail, ttl_changes)
