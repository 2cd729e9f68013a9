"""The blast-radius governor (pure: the clock is passed in).

When more than `max_down_fraction` of all targets would go down within
`down_window`, the likelier story is a fault on the checkers' side (a bad check
deployed everywhere, a shared dependency) rather than most of the fleet dying at
once; moving all traffic onto what is left would turn that fault into an outage.
So the targets of the surge keep the status they had before it, until the surge
clears (they come back or too few are left down), an operator releases the hold,
or `hold_max` passes. A datacenter of three dying (a third) is not a surge.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from geodns.health.health import ProbeKey, Status


@dataclass(frozen=True)
class Hold:
    since: float
    held: frozenset[ProbeKey]  # kept up: every down of the surge
    surge: frozenset[ProbeKey]  # every target that went down within the window (held or not)
    total: int  # targets when it began


@dataclass(frozen=True)
class Event:
    """A change worth a log line: a hold began or ended, and why."""

    kind: str  # "hold" or "release"
    held: frozenset[ProbeKey]
    why: str


class Governor:
    def __init__(self, max_down_fraction: float, down_window: float, hold_max: float) -> None:
        self.max_down_fraction = max_down_fraction
        self.down_window = down_window
        self.hold_max = hold_max
        self.hold: Hold | None = None
        self._downs: deque[tuple[float, ProbeKey]] = deque()  # went up -> down, oldest first
        self._released: set[ProbeKey] = set()  # let go down by a release: not a new surge

    def _limit(self, total: int) -> float:
        return self.max_down_fraction * total

    def apply(
        self, before: Mapping[ProbeKey, Status], proposed: Mapping[ProbeKey, Status], now: float
    ) -> tuple[dict[ProbeKey, Status], Event | None]:
        """What answers use, given what they used (`before`) and what the votes say now."""
        surging: frozenset[ProbeKey] = self.hold.surge if self.hold is not None else frozenset()
        for key, status in proposed.items():
            if status is not Status.DOWN:
                self._released.discard(key)
            elif before.get(key) is Status.UP and key not in surging and key not in self._released:
                self._downs.append((now, key))
        while self._downs and self._downs[0][0] < now - self.down_window:
            self._downs.popleft()
        total = len(proposed)
        event = None
        recent = {key for _, key in self._downs if proposed.get(key) is Status.DOWN}
        if self.hold is not None:
            hold = self.hold
            still_down = {key for key in hold.surge if proposed.get(key) is Status.DOWN}
            if now - hold.since >= self.hold_max:
                event = self._end(f"held for {self.hold_max:g}s (cluster.hold_max): the downs apply now")
            elif len(still_down) <= self._limit(total):
                event = self._end(f"the surge cleared: {len(still_down)} of {total} targets still down")
            else:
                # Targets joining the surge are held too.
                joining = frozenset(k for k in recent if k not in hold.surge and before.get(k) is Status.UP)
                self.hold = Hold(hold.since, hold.held | joining, hold.surge | joining, hold.total)
        elif total and len(recent) > self._limit(total):
            # The state before the surge: downs of the window already in the answers go
            # back up with the rest (they arrived one probe at a time, but are one event).
            held = frozenset(recent)
            self.hold = Hold(now, held, held, total)
            event = Event(
                "hold",
                held,
                f"{len(recent)} of {total} targets went down within {self.down_window:g}s"
                f" (over cluster.max_down_fraction {self.max_down_fraction:g}): treated as a"
                " fault of the checkers, not of the targets; their states before it are kept",
            )
        out = dict(proposed)
        if self.hold is not None:
            for key in self.hold.held:
                if key in out:
                    out[key] = Status.UP
        return out, event

    def release(self, why: str) -> Event | None:
        """An operator's release: the downs the hold kept back apply now."""
        if self.hold is None:
            return None
        return self._end(why)

    def _end(self, why: str) -> Event:
        assert self.hold is not None
        event = Event("release", self.hold.held, why)
        self._released |= self.hold.surge  # what was held is not a new surge once released
        self.hold = None
        self._downs.clear()
        return event
