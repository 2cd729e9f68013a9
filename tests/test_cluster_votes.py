"""Votes, isolation, partitions and the governor, table-tested (pure), and the
Route53 writer's choice on a clock of its own."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from geodns.cluster.governor import Governor
from geodns.cluster.node import ClusterNode
from geodns.cluster.report import Observation, Report
from geodns.cluster.votes import Vantage, decide, needed
from geodns.config import load
from geodns.health.health import Health, ProbeKey, Status
from geodns.health.snapshot import SnapshotStore

UP, DOWN, UNKNOWN = Status.UP, Status.DOWN, Status.UNKNOWN
DCS = ("par", "ams", "nyc")
TARGETS = {f"{dc}{i}": ProbeKey("web", f"{dc}{i}", 80) for dc in DCS for i in (1, 2)}
HOMES = {key: frozenset({name[:3]}) for name, key in TARGETS.items()}


def seen(down: str = "", unknown: str = "", only: str = "") -> dict[ProbeKey, Status]:
    """Every target up, except the datacenters or targets named in `down` / `unknown`
    (space-separated: "par" or "par1"); `only`: probe just these."""

    def named(spec: str, name: str) -> bool:
        return any(name == word or name[:3] == word for word in spec.split())

    out = {}
    for name, key in TARGETS.items():
        if only and not named(only, name):
            continue
        out[key] = DOWN if named(down, name) else UNKNOWN if named(unknown, name) else UP
    return out


def vantage(dc: str, **kw: str) -> Vantage:
    return Vantage(dc, dc, seen(**kw))


def downs(verdict_states: dict[ProbeKey, Status] | object) -> set[str]:
    assert isinstance(verdict_states, dict)
    return {name for name, key in TARGETS.items() if verdict_states[key] is DOWN}


@pytest.mark.parametrize(
    ("scenario", "own", "peers", "expect_down", "isolated", "partitioned"),
    [
        ("all agree up", vantage("par"), [vantage("ams"), vantage("nyc")], set(), set(), False),
        # S1: par's backends die; every instance sees it.
        (
            "S1 par's backends die",
            vantage("ams", down="par"),
            [vantage("par", down="par"), vantage("nyc", down="par")],
            {"par1", "par2"},
            set(),
            False,
        ),
        # S2: par burns, instance included: the two left agree.
        (
            "S2 par burns",
            vantage("ams", down="par"),
            [vantage("nyc", down="par")],
            {"par1", "par2"},
            set(),
            False,
        ),
        # S3 from par's side: it hears nobody and sees everything remote down.
        (
            "S3 par cut off (par)",
            vantage("par", down="ams nyc"),
            [],
            {"ams1", "ams2", "nyc1", "nyc2"},
            set(),
            True,
        ),
        # S3 from ams's side: par is not heard; both see par down.
        (
            "S3 par cut off (ams)",
            vantage("ams", down="par"),
            [vantage("nyc", down="par")],
            {"par1", "par2"},
            set(),
            False,
        ),
        # S4: ams's instance loses its route to everything: its votes are not counted.
        (
            "S4 ams blind (par)",
            vantage("par"),
            [vantage("ams", down="par ams nyc"), vantage("nyc")],
            set(),
            {"ams"},
            False,
        ),
        # S5: ams cannot reach nyc's backends; the others can: nyc stays up.
        (
            "S5 one bad path",
            vantage("par"),
            [vantage("ams", down="nyc"), vantage("nyc")],
            set(),
            set(),
            False,
        ),
        # A tie keeps the target up: one checker alone cannot take it down.
        ("tie", vantage("par"), [vantage("ams", down="nyc1")], set(), set(), False),
        # Unknowns do not vote; a target only one vantage probes is judged by it.
        ("unknowns", vantage("par", unknown="nyc1"), [vantage("ams", down="nyc1")], {"nyc1"}, set(), False),
        (
            "config differs",
            vantage("par", only="par ams"),
            [vantage("ams", only="par ams"), vantage("nyc", down="nyc2")],
            {"nyc2"},
            set(),
            False,
        ),
        # A peer that lies about its datacenter (says par while blind to everything)
        # is still outvoted on what others see up.
        (
            "lying peer",
            vantage("par"),
            [Vantage("ams", "par", seen(down="par ams nyc")), vantage("nyc")],
            set(),
            {"ams"},
            False,
        ),
        # No peer configured: a single instance is never "partitioned".
        ("alone", vantage("par", down="ams nyc"), [], {"ams1", "ams2", "nyc1", "nyc2"}, set(), False),
    ],
)
def test_votes(
    scenario: str,
    own: Vantage,
    peers: list[Vantage],
    expect_down: set[str],
    isolated: set[str],
    partitioned: bool,
) -> None:
    verdict = decide(own, peers, HOMES, peers_configured=scenario != "alone")
    assert downs(dict(verdict.states)) == expect_down, scenario
    assert verdict.isolated == isolated, scenario
    assert verdict.partitioned is partitioned, scenario


def test_targets_seen_only_through_held_states_count_as_down_for_a_partition() -> None:
    # Cut off, one remote site fails with timeouts (down), the other with "no route" (a
    # checker-side error: its state held at up, no fresh result): still a partition.
    own = vantage("par", down="ams")
    blind = frozenset({TARGETS["nyc1"], TARGETS["nyc2"]})
    verdict = decide(own, [], HOMES, blind=blind)
    assert verdict.partitioned
    assert not decide(own, [], HOMES).partitioned  # without knowing, half looked up
    # With peers heard, a blind target gets no vote from this instance.
    voted = decide(vantage("par", down="nyc"), [vantage("ams", down="nyc1")], HOMES, blind=blind)
    assert voted.down_votes[TARGETS["nyc1"]] == ("ams",) and voted.states[TARGETS["nyc2"]] is UP


def test_votes_name_who_said_what() -> None:
    verdict = decide(vantage("par", down="nyc1"), [vantage("ams", down="nyc1"), vantage("nyc")], HOMES)
    key = TARGETS["nyc1"]
    assert verdict.states[key] is DOWN
    assert verdict.down_votes[key] == ("par", "ams") and verdict.up_votes[key] == ("nyc",)


@pytest.mark.parametrize(
    ("quorum", "with_result", "expected"),
    [
        ("majority", 3, 2),
        ("majority", 2, 2),
        ("majority", 1, 1),
        ("any", 3, 1),
        ("all", 3, 3),
        (2, 3, 2),
        (5, 3, 3),
    ],
)
def test_needed(quorum: str | int, with_result: int, expected: int) -> None:
    assert needed(quorum, with_result) == expected


def test_quorum_any_and_all() -> None:
    own, peers = vantage("par", down="nyc1"), [vantage("ams"), vantage("nyc")]
    assert downs(dict(decide(own, peers, HOMES, quorum="any").states)) == {"nyc1"}
    assert downs(dict(decide(own, peers, HOMES, quorum="all").states)) == set()
    assert downs(dict(decide(own, peers, HOMES).states)) == set()


# The governor.

KEYS = [ProbeKey("web", f"10.0.0.{i}", 80) for i in range(12)]  # 4 datacenters of 3


def states(down: int) -> dict[ProbeKey, Status]:
    return {key: DOWN if i < down else UP for i, key in enumerate(KEYS)}


def test_a_datacenter_dying_is_not_a_surge() -> None:
    governor = Governor(0.75, 60, 600)
    out, event = governor.apply(states(0), states(3), 100.0)
    assert out == states(3) and event is None and governor.hold is None


def test_most_of_everything_down_at_once_is_held_until_it_clears() -> None:
    governor = Governor(0.75, 60, 600)
    out, event = governor.apply(states(0), states(10), 100.0)  # 10 of 12 > 75%
    assert out == states(0) and event is not None and event.kind == "hold" and len(event.held) == 10
    out, event = governor.apply(out, states(11), 101.0)  # one more joins the surge: held too
    assert out == states(0) and event is None and governor.hold is not None and len(governor.hold.held) == 11
    out, event = governor.apply(out, states(2), 130.0)  # the bad check was fixed
    assert out == states(2) and event is not None and event.kind == "release"


def test_just_over_and_just_under_the_line() -> None:
    under = Governor(0.75, 60, 600)
    assert under.apply(states(0), states(9), 1.0)[0] == states(9)  # 9 of 12 = 75%: not more than
    over = Governor(0.75, 60, 600)
    assert over.apply(states(0), states(10), 1.0)[0] == states(0)


def test_downs_spread_over_the_window_add_up_and_old_ones_drop_out() -> None:
    governor = Governor(0.75, 60, 600)
    out, _ = governor.apply(states(0), states(5), 0.0)
    assert out == states(5)
    out, event = governor.apply(out, states(10), 30.0)  # 10 within a minute: the state before them
    assert event is not None and event.kind == "hold" and out == states(0)
    slow = Governor(0.75, 60, 600)
    out, _ = slow.apply(states(0), states(5), 0.0)
    out, event = slow.apply(out, states(10), 90.0)  # the first five are older than the window
    assert event is None and out == states(10)


def test_release_and_hold_max_let_the_downs_apply_and_a_real_loss_after_still_fails_over() -> None:
    governor = Governor(0.75, 60, 600)
    out, _ = governor.apply(states(0), states(10), 0.0)
    event = governor.release("released by alice")
    assert event is not None and event.kind == "release" and "alice" in event.why
    out, event = governor.apply(out, states(10), 1.0)
    assert out == states(10) and event is None  # not held again
    out, event = governor.apply(out, states(11), 2.0)  # a real loss right after: fails over
    assert out == states(11) and event is None
    timed = Governor(0.75, 60, 600)
    out, _ = timed.apply(states(0), states(10), 0.0)
    out, event = timed.apply(out, states(10), 599.0)
    assert out == states(0)
    out, event = timed.apply(out, states(10), 600.0)
    assert out == states(10) and event is not None and "hold_max" in event.why


# The Route53 writer (the node, on a clock of its own).


def test_a_new_instance_waits_for_its_peers_before_it_may_write(tmp_path: Path) -> None:
    (tmp_path / "geodns.yaml").write_text(
        "server: {mode: route53, state_dir: state, http_listen: null, name: b}\n"
        "datacenters: {par: {}}\n"
        "pools: {web: {members: [{address: 192.0.2.1, dc: par}]}}\n"
        "route53: {records: [{name: www.example.com., hosted_zone_id: Z1, pool: web}]}\n"
        "cluster: {timeout: 3s, peers: [{name: a, url: 'http://127.0.0.1:9'}, {name: c, url: 'http://127.0.0.1:9'}]}\n"
    )
    now = [100.0]
    node = ClusterNode(load(tmp_path / "geodns.yaml"), SnapshotStore(), "b", clock=lambda: now[0])
    assert node.writer() is None and node.may_write()[0] is False  # a or c may be alive and writing
    now[0] = 103.5
    assert node.writer() == "b"  # nobody heard within a timeout: this one writes
    node.heard("c", Report("c", None, "boot", 1, "h", {}, route53=True))
    assert node.writer() == "b"  # c syncs too, but b is the smaller name
    node.heard("a", Report("a", None, "boot", 1, "h", {}, route53=True))
    assert node.writer() == "a" and node.may_write() == (False, "a writes")
    now[0] = 110.0  # a silent for longer than the timeout: not counted, b takes over
    assert node.writer() == "b"


# Partition onset (the node, on clocks of its own): its own probes of remote targets
# fail one after the other, and its peers fall silent in between.


def _par_node(tmp_path: Path) -> tuple[ClusterNode, list[float], dict[str, ProbeKey]]:
    members = "".join(f"{{address: 192.0.2.{i}, dc: {dc}}}, " for i, dc in enumerate(DCS, 1))
    (tmp_path / "geodns.yaml").write_text(
        "server: {mode: route53, state_dir: state, http_listen: null, name: par, datacenter: par}\n"
        "datacenters: {par: {}, ams: {}, nyc: {}}\n"
        "checks: {web: {type: tcp, port: 80, interval: 1s, timeout: 500ms, fall: 2, rise: 2}}\n"
        f"pools: {{web: {{check: web, members: [{members}]}}}}\n"
        "route53: {records: [{name: www.example.com., hosted_zone_id: Z1, pool: web}]}\n"
        "cluster: {timeout: 3s, peers: [{name: ams, url: 'http://127.0.0.1:9', datacenter: ams},"
        " {name: nyc, url: 'http://127.0.0.1:9', datacenter: nyc}]}\n"
    )
    now = [100.0]
    node = ClusterNode(
        load(tmp_path / "geodns.yaml"), SnapshotStore(), "par", clock=lambda: now[0], wall=lambda: now[0]
    )
    keys = {dc: ProbeKey("web", f"192.0.2.{i}", 80) for i, dc in enumerate(DCS, 1)}
    # Together first: every vantage sees everything up, and that is the agreed state.
    node.on_local(_own(now[0]))
    all_up = {key: Observation(UP, "", 1.0, 100.0) for key in keys.values()}
    for peer in ("ams", "nyc"):
        node.heard(peer, Report(peer, peer, "boot", 1, node.hash, all_up))
    return node, now, keys


def _own(now: float, **states: Health) -> dict[ProbeKey, Health]:
    up = Health(Status.UP, successes=5, checked=now, since=1.0)
    return {ProbeKey("web", f"192.0.2.{i}", 80): states.get(dc, up) for i, dc in enumerate(DCS, 1)}


def _answered_down(node: ClusterNode, keys: dict[str, ProbeKey]) -> set[str]:
    return {dc for dc, key in keys.items() if node.answered.get(key) is Status.DOWN}


def test_a_cut_off_instance_waits_for_its_failing_probes_before_deciding_alone(tmp_path: Path) -> None:
    node, now, keys = _par_node(tmp_path)
    assert _answered_down(node, keys) == set()
    # Cut: ams's probes fail twice (down), nyc's have failed once; the peers fall silent.
    now[0] = 102.0
    down = Health(Status.DOWN, failures=2, reason="timeout", checked=now[0], since=now[0])
    failing = Health(Status.UP, failures=1, reason="timeout", checked=now[0], since=1.0)
    node.on_local(_own(now[0], ams=down, nyc=failing))
    assert _answered_down(node, keys) == set()  # peers still counted: they say up
    now[0] = 103.5  # peers silent for longer than the timeout: alone
    node.recompute()
    now[0] = 106.6  # alone for longer than a timeout, nyc still undecided: wait for it
    t = now[0]
    node.on_local(
        _own(t, ams=dataclasses.replace(down, checked=t), nyc=dataclasses.replace(failing, checked=t))
    )
    assert _answered_down(node, keys) == set() and not node.partitioned
    # nyc's second failure: most remote targets down alone is a partition: the agreed state holds.
    node.on_local(_own(now[0], ams=down, nyc=dataclasses.replace(down, checked=now[0])))
    assert node.partitioned and _answered_down(node, keys) == set()


def test_a_remote_target_held_by_a_checker_error_counts_as_unseen_at_once(tmp_path: Path) -> None:
    node, now, keys = _par_node(tmp_path)
    now[0] = 102.0
    down = Health(Status.DOWN, failures=2, reason="timeout", checked=now[0], since=now[0])
    # nyc's last attempt failed on this host's side (a stalled loop): its "up" is only held.
    held = Health(Status.UP, successes=5, checked=now[0], since=1.0, held=True)
    node.on_local(_own(now[0], ams=down, nyc=held))
    now[0] = 106.6  # alone for longer than a timeout; nyc's last result is recent, but held
    node.on_local(_own(now[0], ams=down, nyc=dataclasses.replace(held, checked=106.0)))
    assert node.partitioned and _answered_down(node, keys) == set()


def test_an_instance_whose_peers_died_still_fails_over_alone(tmp_path: Path) -> None:
    """The other side of the rule above: peers dead, own probes fresh and settled."""
    node, now, keys = _par_node(tmp_path)
    now[0] = 106.6  # the peers died; every own probe is fresh
    node.on_local(_own(now[0]))
    now[0] = 110.0  # alone for longer than a timeout
    down = Health(Status.DOWN, failures=2, reason="HTTP 503", checked=now[0], since=now[0])
    node.on_local(_own(now[0], ams=down))
    assert not node.partitioned and _answered_down(node, keys) == {"ams"}
