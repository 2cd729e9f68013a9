"""Where each pool answers from now, and whether it is failing open (pure).

The answer an operator needs first during an incident: "which datacenter takes
the traffic of pool web?" For failover pools that is the chosen datacenter; for
weighted and all pools the datacenters of the members drawn from; for geo pools
the choice for a client no topology rule matches (each rule may pick another).
When no member is up the pool answers with its `fallback`, which is said here
plainly: a pool failing open looks healthy from outside and is not.
"""

from __future__ import annotations

from dataclasses import dataclass

from geodns.config.model import Config, Pool
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import Decision, decide, member_views


@dataclass(frozen=True)
class PoolState:
    pool: str
    answering: tuple[str, ...]  # datacenters the answers come from, in pool order
    fallback: str | None  # "all", "empty", "servfail", "pool:NAME" while no member is up
    up: int
    total: int
    via: str | None = None  # the pool a pool:NAME fallback answers from
    families: tuple[tuple[str, tuple[str, ...]], ...] = ()  # ("IPv4", (dc, ...)) when they differ

    @property
    def failing_open(self) -> bool:
        return self.fallback is not None

    def describe(self) -> str:
        """'all 4 members down, answering all of them (fallback all)', or 'answering from par'."""
        if self.fallback is None:
            where = ", ".join(self.answering) or "nowhere"
            if self.families:
                where = "; ".join(f"{', '.join(d) or 'nowhere'} ({family})" for family, d in self.families)
            return f"answering from {where} ({self.up}/{self.total} members up)"
        head = (
            f"all {self.total} members down"
            if self.up == 0
            else f"no member of one family up ({self.up}/{self.total} up)"
        )
        what = {
            "all": "answering all of them",
            "empty": "answering no address (NODATA)",
            "servfail": "answering SERVFAIL",
        }.get(self.fallback, f"answering from pool {self.via} ({', '.join(self.answering) or 'nowhere'})")
        return f"{head}, {what} (fallback {self.fallback})"


def pool_state(config: Config, snapshot: HealthSnapshot, pool: Pool) -> PoolState:
    views = member_views(pool, config, snapshot)
    families = sorted({v.member.is_v6 for v in views})
    decisions = [decide(config, snapshot, pool.name, v6, None, views=views) for v6 in families]
    up = sum(1 for v in views if v.up)
    fallen = next((d for d in decisions if d.fallback is not None), None)
    answering = _datacenters(config, [d.final() for d in decisions])
    per_family = tuple(("IPv6" if d.v6 else "IPv4", _datacenters(config, [d.final()])) for d in decisions)
    split = per_family if len({dcs for _, dcs in per_family}) > 1 else ()
    if fallen is None:
        return PoolState(pool.name, answering, None, up, len(views), families=split)
    via = fallen.via.pool.name if fallen.via is not None else None
    return PoolState(pool.name, answering, fallen.fallback, up, len(views), via, split)


def pool_states(config: Config, snapshot: HealthSnapshot) -> dict[str, PoolState]:
    return {name: pool_state(config, snapshot, pool) for name, pool in config.pools.items()}


def _datacenters(config: Config, decisions: list[Decision]) -> tuple[str, ...]:
    used = {m.dc for d in decisions if not d.servfail for m in d.candidates}
    return tuple(dc.name for dc in config.datacenters if dc.name in used)
