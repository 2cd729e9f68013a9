"""Pool selection (pure): which members of a pool a pool-backed record answers.

Health-driven policies (failover, weighted, geo) build on this module; until a
health snapshot exists every member of the record's address family answers.
"""

from __future__ import annotations

from collections.abc import Mapping

from geodns.answer import Client, PoolResult
from geodns.config.model import Pool
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
