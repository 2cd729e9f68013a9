"""What Route53 should hold, from the config and one health snapshot (pure).

Each `route53.records` entry becomes one weighted record set per datacenter of
its pool and address family (A for IPv4 members, AAAA for IPv6), SetIdentifier
`<owner>-<datacenter>`. Values: the datacenter's healthy members, or all of
them while it has none (a weight-0 set still needs values). Weights:
- weighted / all: the sum of the datacenter's healthy member weights;
- failover / geo: the datacenter the pool's failover choice lands on gets its
  healthy weight (at least 1), the others 0 (Route53 weighted records cannot
  steer by client subnet: geo pools sync as their failover order).
Never all zero: with every datacenter down the pool's fallback applies as
fail-open (configured weights, all members) and `fail_open` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from geodns.config.model import Config, Member, Route53Record
from geodns.health.snapshot import HealthSnapshot
from geodns.route53.model import RecordKey, RecordSet
from geodns.steering.policy import MemberView, decide, member_views
from geodns.zone.names import to_text


@dataclass(frozen=True)
class Desired:
    records: tuple[RecordSet, ...]
    why: dict[RecordKey, str]  # per record set: a few words on its weight, for plan lines
    fail_open: tuple[str, ...]  # "www.example.com. A" for each name that failed open


MAX_WEIGHT = 255  # Route53's range is 0..255


def _weight_sum(members: list[Member]) -> int:
    return sum(m.weight for m in members)


def _fit(weights: dict[str, int]) -> dict[str, int]:
    """Scale into 0..255 keeping proportions; a non-zero weight never rounds to 0."""
    top = max(weights.values(), default=0)
    if top <= MAX_WEIGHT:
        return weights
    return {dc: max(1, round(w * MAX_WEIGHT / top)) if w else 0 for dc, w in weights.items()}


def desired_records(config: Config, snapshot: HealthSnapshot) -> Desired:
    assert config.route53 is not None
    owner = config.route53.owner
    records: list[RecordSet] = []
    why: dict[RecordKey, str] = {}
    fail_open: list[str] = []
    for spec in config.route53.records:
        pool = config.pools[spec.pool]
        views = member_views(pool, config, snapshot)
        for rtype, v6 in (("A", False), ("AAAA", True)):
            family = [v for v in views if v.member.is_v6 == v6]
            if not family:
                continue
            sets, notes, opened = _for_family(config, snapshot, spec, rtype, v6, family, owner)
            records += sets
            why.update(notes)
            if opened:
                fail_open.append(f"{to_text(spec.name)} {rtype}")
    return Desired(tuple(records), why, tuple(fail_open))


def _for_family(
    config: Config,
    snapshot: HealthSnapshot,
    spec: Route53Record,
    rtype: str,
    v6: bool,
    family: list[MemberView],
    owner: str,
) -> tuple[list[RecordSet], dict[RecordKey, str], bool]:
    pool = config.pools[spec.pool]
    by_dc: dict[str, list[MemberView]] = {}
    for view in family:
        by_dc.setdefault(view.member.dc, []).append(view)
    healthy = {dc: [v.member for v in vs if v.up] for dc, vs in by_dc.items()}
    weights: dict[str, int] = {}
    if pool.policy in ("weighted", "all"):
        weights = {
            dc: _weight_sum(up) if pool.policy == "weighted" else len(up) for dc, up in healthy.items()
        }
    else:
        chosen = decide(config, snapshot, pool.name, v6, None).final().chosen_dc
        weights = {dc: (max(1, _weight_sum(healthy[dc])) if dc == chosen else 0) for dc in by_dc}
    opened = not any(weights.values())
    if opened:
        # Every datacenter down: fail open with the configured weights, never all zero.
        weights = {dc: max(1, _weight_sum([v.member for v in vs])) for dc, vs in by_dc.items()}
    weights = _fit(weights)
    sets, notes = [], {}
    name = to_text(spec.name)
    for dc, vs in by_dc.items():
        up = healthy[dc]
        values = tuple(sorted(m.address for m in (up or [v.member for v in vs])))
        record = RecordSet(spec.hosted_zone_id, name, rtype, f"{owner}-{dc}", weights[dc], spec.ttl, values)
        sets.append(record)
        state = f"{len(up)}/{len(vs)} members up" if up else f"{dc} down: {len(vs)}/{len(vs)} members failing"
        forced = [v for v in vs if v.forced_by is not None]
        if forced:
            state += f", forced by {forced[0].forced_by.target}"  # type: ignore[union-attr]
        if opened:
            state += "; every datacenter down: failing open"
        notes[record.key] = state
    return sets, notes, opened
