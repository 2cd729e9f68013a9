"""The pure hysteresis, table-tested."""

from __future__ import annotations

import pytest

from geodns.health.health import Health, Status, describe, restore, step

U, D, X = Status.UP, Status.DOWN, Status.UNKNOWN


def run(results: str, rise: int = 2, fall: int = 3, start: Health | None = None) -> list[Status]:
    """'+' a success, '-' a failure; returns the status after each."""
    h = start or Health()
    out = []
    for i, r in enumerate(results):
        h = step(h, r == "+", "boom", float(i), rise=rise, fall=fall)
        out.append(h.status)
    return out


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ("+", [U]),  # the first result decides at once
        ("-", [D]),
        ("+--", [U, U, U]),  # two failures < fall=3
        ("+---", [U, U, U, D]),  # the third goes down
        ("+--+--", [U] * 6),  # a success resets the failure count
        ("-+", [D, D]),  # one success < rise=2
        ("-++", [D, D, U]),
        ("-+-+-+", [D] * 6),  # a flapping backend never comes up
        ("+-+-+-+-", [U] * 8),  # ...and never goes down from up
        ("---+++---", [D, D, D, D, U, U, U, U, D]),
    ],
)
def test_hysteresis(results: str, expected: list[Status]) -> None:
    assert run(results) == expected


def test_rise_and_fall_of_one_follow_every_result() -> None:
    assert run("+-+-", rise=1, fall=1) == [U, D, U, D]


def test_counters_reason_and_times() -> None:
    h = step(Health(), True, "", 10.0, rise=2, fall=2, latency=0.01)
    assert (h.status, h.since, h.checked, h.successes, h.latency, h.reason) == (U, 10.0, 10.0, 1, 0.01, "")
    h = step(h, False, "HTTP 503", 12.0, rise=2, fall=2)
    assert (h.status, h.failures, h.successes, h.reason, h.since) == (U, 1, 0, "HTTP 503", 10.0)
    h = step(h, False, "timeout", 14.0, rise=2, fall=2)
    assert (h.status, h.reason, h.since) == (D, "timeout", 14.0)
    h = step(h, True, "", 16.0, rise=2, fall=2)
    assert (h.status, h.reason, h.last_ok) == (D, "timeout", True)  # the last failure stays shown


def test_describe() -> None:
    up = step(Health(), True, "", 0.0, rise=2, fall=3)
    assert describe(Health(), up) == "unknown -> up: first probe succeeded"
    h = up
    for t in (1.0, 2.0, 3.0):
        h = step(h, False, 'HTTP 200 body did not match "OK"', t, rise=2, fall=3)
    assert describe(up, h) == 'up -> down after 3 failures: HTTP 200 body did not match "OK"'
    back = step(step(h, True, "", 4.0, rise=2, fall=3), True, "", 5.0, rise=2, fall=3)
    assert describe(h, back) == "down -> up after 2 successes"
    first_down = step(Health(), False, "refused", 0.0, rise=2, fall=3)
    assert describe(Health(), first_down) == "unknown -> down: first probe failed: refused"


def test_restored_state_needs_full_hysteresis_to_change() -> None:
    saved = Health(status=D, reason="timeout", since=100.0)
    h = restore(saved)
    assert h.restored and not h.fresh and h.status is D
    h = step(h, True, "", 200.0, rise=2, fall=3)
    assert h.status is D and h.fresh  # one success is not enough to send traffic back
    h = step(h, True, "", 201.0, rise=2, fall=3)
    assert h.status is U
    assert run("--", start=restore(Health(status=U))) == [U, U]
