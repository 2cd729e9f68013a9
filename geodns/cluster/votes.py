"""Health decided from several vantage points (pure: everything is passed in).

Each instance probes every target itself, with its own rise/fall hysteresis,
and publishes what it sees. The state answers use is a vote over the vantages
counted (heard from lately, this instance included):

- a target is down when enough vantages with a result for it say so:
  `majority` (more than half; a tie keeps it up, so a checker alone cannot take
  a service down), `any`, `all`, or a count;
- a vantage that sees most targets outside its own datacenter down while the
  others see them up is *isolated*: its own network is what broke, and its
  votes are not counted;
- an instance that hears from no peer and sees most remote targets down is in
  a minority partition (`Verdict.partitioned`): its caller keeps answering
  with the last state the cluster agreed on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from geodns.config.model import Check
from geodns.health.health import Health, ProbeKey, Status


@dataclass(frozen=True)
class Vantage:
    """What one instance sees: the status its own probes give each target."""

    name: str
    datacenter: str | None
    seen: Mapping[ProbeKey, Status]


@dataclass(frozen=True)
class Verdict:
    states: Mapping[ProbeKey, Status]  # what answers use (targets nobody has a result for: unknown)
    down_votes: Mapping[ProbeKey, tuple[str, ...]]  # counted vantages saying down, by target
    up_votes: Mapping[ProbeKey, tuple[str, ...]]
    isolated: frozenset[str]  # vantages whose votes were not counted
    partitioned: bool  # this instance hears no peer and sees most remote targets down


Homes = Mapping[ProbeKey, frozenset[str]]  # the datacenters of the members behind each target


def _remote(vantage: Vantage, homes: Homes) -> list[ProbeKey]:
    """The targets `vantage` has a result for that live outside its own datacenter."""
    dc = vantage.datacenter
    return [
        key
        for key, status in vantage.seen.items()
        if status is not Status.UNKNOWN and (dc is None or dc not in homes.get(key, ()))
    ]


def isolated(vantages: Sequence[Vantage], homes: Homes, share: float) -> frozenset[str]:
    """Vantages that alone see more than `share` of their remote targets down: for
    each such target, the other vantages with a result mostly say up."""
    out: set[str] = set()
    for vantage in vantages:
        remote = _remote(vantage, homes)
        if not remote:
            continue
        contradicted = 0
        for key in remote:
            if vantage.seen[key] is not Status.DOWN:
                continue
            others = [v.seen.get(key, Status.UNKNOWN) for v in vantages if v is not vantage]
            up = sum(1 for s in others if s is Status.UP)
            down = sum(1 for s in others if s is Status.DOWN)
            if up > down:
                contradicted += 1
        if contradicted > share * len(remote):
            out.add(vantage.name)
    return frozenset(out)


def remote_down_share(vantage: Vantage, homes: Homes) -> float:
    remote = _remote(vantage, homes)
    if not remote:
        return 0.0
    return sum(1 for key in remote if vantage.seen[key] is Status.DOWN) / len(remote)


def needed(quorum: str | int, with_result: int) -> int:
    """How many down votes take a target down, out of `with_result` vantages."""
    if quorum == "majority":
        return with_result // 2 + 1  # more than half: a tie keeps it up
    if quorum == "any":
        return 1
    if quorum == "all":
        return with_result
    assert isinstance(quorum, int)
    return min(quorum, with_result)  # a target few vantages probe is judged by those that do


def decide(
    own: Vantage,
    peers: Sequence[Vantage],
    homes: Homes,
    *,
    quorum: str | int = "majority",
    isolation: float = 0.5,
    peers_configured: bool = True,
    blind: frozenset[ProbeKey] = frozenset(),
) -> Verdict:
    """`peers`: the vantages heard from lately (stale ones left out by the caller).
    `homes`: the datacenters of the members behind each target. `blind`: targets this
    instance has no fresh result for (its probes failed on its own side, e.g. no route:
    states held): no vote, but they look down when judging a partition."""
    looks = own
    if blind:
        looks = Vantage(
            own.name, own.datacenter, {k: Status.DOWN if k in blind else s for k, s in own.seen.items()}
        )
        own = Vantage(
            own.name, own.datacenter, {k: Status.UNKNOWN if k in blind else s for k, s in own.seen.items()}
        )
    vantages = [own, *peers]
    alone = isolated(vantages, homes, isolation) if len(vantages) > 1 else frozenset()
    counted = [v for v in vantages if v.name not in alone] or vantages
    keys: set[ProbeKey] = set()
    for vantage in vantages:
        keys.update(vantage.seen)
    states: dict[ProbeKey, Status] = {}
    downs: dict[ProbeKey, tuple[str, ...]] = {}
    ups: dict[ProbeKey, tuple[str, ...]] = {}
    for key in keys:
        down = tuple(v.name for v in counted if v.seen.get(key) is Status.DOWN)
        up = tuple(v.name for v in counted if v.seen.get(key) is Status.UP)
        downs[key], ups[key] = down, up
        with_result = len(down) + len(up)
        if not with_result:
            states[key] = Status.UNKNOWN
        else:
            states[key] = Status.DOWN if len(down) >= needed(quorum, with_result) else Status.UP
    partitioned = peers_configured and not peers and remote_down_share(looks, homes) > isolation
    return Verdict(states, downs, ups, alone, partitioned)


def blind_targets(
    live: Mapping[ProbeKey, Health], checks: Mapping[str, Check], now: float
) -> frozenset[ProbeKey]:
    """Targets whose last own attempt failed on this host's side (no descriptors,
    a stalled loop, over the probe budget: the monitor holds their states), or whose
    last result is old: 'up' here only means 'last seen up'. A cut-off instance
    sees its remote targets this way, not as down."""
    out = []
    for key, health in live.items():
        check = checks.get(key.check)
        if check is None or health.checked is None:
            continue
        if health.held or now - health.checked > 2 * check.interval + check.timeout + 1.0:
            out.append(key)
    return frozenset(out)


def settling_grace(
    live: Mapping[ProbeKey, Health], checks: Mapping[str, Check], homes: Homes, datacenter: str | None
) -> float:
    """How much longer than cluster.timeout an instance newly alone waits before it
    decides alone: one fall's worth of the slowest remote target whose own probes
    have begun failing but not decided. At the onset of a cut they fail one after
    the other; deciding between them would take the first down alone, a moment
    before the rest show the partition."""
    undecided = [
        check
        for key, health in live.items()
        if health.status is Status.UP
        and health.failures > 0
        and datacenter not in homes.get(key, ())
        and (check := checks.get(key.check)) is not None
    ]
    return max((c.fall * c.interval + c.timeout for c in undecided), default=0.0)


def homes_of(members: Iterable[tuple[ProbeKey, str]]) -> dict[ProbeKey, frozenset[str]]:
    """(target, member datacenter) pairs -> each target's datacenters."""
    out: dict[ProbeKey, set[str]] = {}
    for key, dc in members:
        out.setdefault(key, set()).add(dc)
    return {key: frozenset(dcs) for key, dcs in out.items()}
