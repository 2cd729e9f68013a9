"""Pool selection (pure): which members of a pool a pool-backed record answers.

`AllMembers` answers every member (zone export, and configs without checks);
`HealthyMembers` answers from a health snapshot with the pool's fallback.
"""

from __future__ import annotations

from collections.abc import Mapping

from geodns.answer import Client, PoolResult
from geodns.config.model import Check, Pool
from geodns.health import Status, probe_key
from geodns.snapshot import HealthSnapshot
from geodns.zone import Address, PoolRRset, RRset, RType


class AllMembers:
    """Answers every member of the pool with the record's address family."""

    def __init__(self, pools: Mapping[str, Pool]) -> None:
        self._addresses: dict[tuple[str, int], tuple[Address, ...]] = {}
        for pool in pools.values():
            for rtype, v6 in ((int(RType.A), False), (int(RType.AAAA), True)):
                self._addresses[(pool.name, rtype)] = tuple(
                    Address(m.address) for m in pool.members if m.is_v6 == v6
                )

    def select(self, entry: PoolRRset, client: Client) -> PoolResult:
        rdatas = self._addresses.get((entry.pool, entry.rtype), ())
        return PoolResult(RRset(entry.name, entry.rtype, entry.ttl, rdatas))


class HealthyMembers:
    """Answers the healthy members of the record's family, read from one snapshot.

    When none is healthy the pool's `fallback` decides: `all` fails open (every
    member), `empty` gives NODATA, `servfail` SERVFAIL, `pool:<name>` asks
    another pool. Results are cached per snapshot: the snapshot is immutable,
    and a new one gets a new HealthyMembers.
    """

    def __init__(
        self, pools: Mapping[str, Pool], checks: Mapping[str, Check], snapshot: HealthSnapshot
    ) -> None:
        self.pools = pools
        self.checks = checks
        self.snapshot = snapshot
        self._cache: dict[tuple[str, int], tuple[Address, ...] | None] = {}

    def select(self, entry: PoolRRset, client: Client) -> PoolResult:
        key = (entry.pool, entry.rtype)
        if key not in self._cache:
            self._cache[key] = self._choose(entry.pool, entry.rtype == RType.AAAA, [])
        addresses = self._cache[key]
        if addresses is None:
            return PoolResult(None, servfail=True)
        return PoolResult(RRset(entry.name, entry.rtype, entry.ttl, addresses))

    def _choose(self, name: str, v6: bool, seen: list[str]) -> tuple[Address, ...] | None:
        pool = self.pools[name]
        family = [m for m in pool.members if m.is_v6 == v6]
        up = [m for m in family if self.snapshot.status(probe_key(pool, m, self.checks)) is Status.UP]
        if up:
            return tuple(Address(m.address) for m in up)
        fallback = pool.fallback
        if fallback == "empty":
            return ()
        if fallback == "servfail":
            return None
        if fallback.startswith("pool:") and fallback[5:] not in seen:
            return self._choose(fallback[5:], v6, [*seen, name])
        return tuple(Address(m.address) for m in family)  # "all": fail open
