"""Says, loudly and once, when a pool starts or stops failing open, and which
datacenter each pool answers from since when.

Subscribed to the snapshot store: every published snapshot is compared with the
last one, pool by pool. A pool answering with its fallback because no member is
up looks healthy from outside (it answers) and is not: one WARNING on entering and
on leaving, a gauge for alerts, a line in `geodns status`, the status page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from geodns.config.model import Config
from geodns.health.history import Event, History
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.poolstate import PoolState, pool_states
from geodns.timefmt import iso

log = logging.getLogger(__name__)


@dataclass
class _Seen:
    state: PoolState
    since: float  # when `answering` last changed
    fallback_since: float | None  # when the pool started failing open


class PoolWatch:
    def __init__(
        self,
        config: Config,
        wall: Callable[[], float],
        history: History,
        gauge: Callable[[PoolState | str], None],
        known: Callable[[], bool],
    ) -> None:
        self.config = config
        self.wall = wall
        self.history = history
        self.gauge = gauge  # a pool's state to its gauges; a name alone: the pool went away
        self.known = known  # before every member has a state, "all down" would be a lie
        self.seen: dict[str, _Seen] = {}

    def update_config(self, config: Config) -> None:
        self.config = config
        for gone in [name for name in self.seen if name not in config.pools]:
            del self.seen[gone]
            self.gauge(gone)

    def on_snapshot(self, snapshot: HealthSnapshot) -> None:
        if not self.known():
            return
        now = self.wall()
        for name, state in pool_states(self.config, snapshot).items():
            before = self.seen.get(name)
            if before is None:
                self.seen[name] = _Seen(state, now, now if state.failing_open else None)
                if state.failing_open:
                    self._say_failing_open(state)
            else:
                self._compare(before, state, now)
            self.gauge(state)

    def _compare(self, before: _Seen, state: PoolState, now: float) -> None:
        old = before.state
        if state.failing_open and not old.failing_open:
            before.fallback_since = now
            self._say_failing_open(state)
            self._event(state, "answering", f"fallback {state.fallback}", state.describe(), now)
        elif old.failing_open and not state.failing_open:
            lasted = now - (before.fallback_since or now)
            log.warning(
                "pool %s: no longer failing open after %.0fs: %s",
                state.pool,
                lasted,
                state.describe(),
                extra={"event": "pool_fallback", "pool": state.pool, "old": "fallback", "new": "answering"},
            )
            before.fallback_since = None
            self._event(state, f"fallback {old.fallback}", "answering", state.describe(), now)
        elif state.answering != old.answering and not state.failing_open:
            log.warning(
                "pool %s: now answering from %s (was %s)",
                state.pool,
                ", ".join(state.answering) or "nowhere",
                ", ".join(old.answering) or "nowhere",
                extra={"event": "pool_answering", "pool": state.pool},
            )
            self._event(state, ", ".join(old.answering), ", ".join(state.answering), state.describe(), now)
        if state.answering != old.answering or state.fallback != old.fallback:
            before.since = now
        before.state = state

    def _say_failing_open(self, state: PoolState) -> None:
        log.warning(
            "pool %s: %s",
            state.pool,
            state.describe(),
            extra={"event": "pool_fallback", "pool": state.pool, "old": "answering", "new": "fallback"},
        )

    def _event(self, state: PoolState, old: str, new: str, reason: str, now: float) -> None:
        self.history.add(Event(now, f"pool {state.pool}", old or "nowhere", new or "nowhere", reason))

    def to_json(self, name: str) -> dict[str, Any] | None:
        seen = self.seen.get(name)
        if seen is None:
            return None
        s = seen.state
        return {
            "answering_from": list(s.answering),
            "since": iso(seen.since),
            "failing_open": s.failing_open,
            "fallback_active": s.fallback,
            "fallback_since": iso(seen.fallback_since),
            "members_up": s.up,
            "members": s.total,
            "summary": s.describe(),
        }
