"""What happened lately, for the status page and `geodns status`: the last state
changes (member and pool), and each probe target's last results.

Bounded on purpose: the page shows a story, not an archive (logs and metrics
keep the rest). Times are wall-clock seconds, passed in by the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from geodns.health.health import ProbeKey
from geodns.timefmt import iso

KEEP_EVENTS = 200
KEEP_PROBES = 40  # per target: a strip of the last results on the status page


@dataclass(frozen=True)
class Event:
    when: float
    subject: str  # "member 127.0.0.11" or "pool web"
    old: str
    new: str
    reason: str
    forced: bool = False
    pool: str | None = None
    dc: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "time": iso(self.when),
            "subject": self.subject,
            "pool": self.pool,
            "dc": self.dc,
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "forced": self.forced,
        }


class History:
    def __init__(self, keep_events: int = KEEP_EVENTS, keep_probes: int = KEEP_PROBES) -> None:
        self.events: deque[Event] = deque(maxlen=keep_events)
        self._probes: dict[ProbeKey, deque[tuple[float, bool, float | None]]] = {}
        self._keep_probes = keep_probes

    def add(self, event: Event) -> None:
        self.events.append(event)

    def probe(self, key: ProbeKey, when: float, ok: bool, latency: float | None) -> None:
        strip = self._probes.get(key)
        if strip is None:
            strip = self._probes[key] = deque(maxlen=self._keep_probes)
        strip.append((when, ok, latency))

    def forget(self, keep: set[ProbeKey]) -> None:
        """After a reload: the strips of targets that went away."""
        for key in [k for k in self._probes if k not in keep]:
            del self._probes[key]

    def strip(self, key: ProbeKey) -> list[list[Any]]:
        """[[ok, latency in ms or None], ...], oldest first."""
        return [
            [ok, None if latency is None else round(latency * 1000, 2)]
            for _, ok, latency in self._probes.get(key, ())
        ]

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest events first."""
        return [e.to_json() for e in list(self.events)[-limit:][::-1]]
