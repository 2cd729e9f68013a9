"""Immutable, versioned health snapshots and the store that publishes them.

DNS answers read exactly one snapshot; only the monitor publishes the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from geodns.health.health import Health, ProbeKey, Status
from geodns.health.overrides import Override

log = logging.getLogger(__name__)

UNKNOWN = Health()


@dataclass(frozen=True)
class HealthSnapshot:
    version: int
    states: Mapping[ProbeKey, Health] = field(default_factory=lambda: MappingProxyType({}))
    overrides: tuple[Override, ...] = ()  # active ones only; expired ones are published away

    def health(self, key: ProbeKey | None) -> Health:
        return UNKNOWN if key is None else self.states.get(key, UNKNOWN)

    def status(self, key: ProbeKey | None) -> Status:
        """A member without a check counts as up: nothing says otherwise."""
        if key is None:
            return Status.UP
        return self.states.get(key, UNKNOWN).status


Subscriber = Callable[[HealthSnapshot], None]


class SnapshotStore:
    def __init__(self) -> None:
        self._current = HealthSnapshot(0)
        self._subscribers: list[Subscriber] = []

    def current(self) -> HealthSnapshot:
        return self._current

    def publish(
        self, states: Mapping[ProbeKey, Health] | None = None, overrides: tuple[Override, ...] | None = None
    ) -> HealthSnapshot:
        """A new version with new states and/or overrides (None keeps the current ones)."""
        current = self._current
        snapshot = HealthSnapshot(
            current.version + 1,
            current.states if states is None else MappingProxyType(dict(states)),
            current.overrides if overrides is None else overrides,
        )
        self._current = snapshot
        for subscriber in list(self._subscribers):
            try:
                subscriber(snapshot)
            except Exception:
                # One broken consumer must not stop the others from seeing the change.
                log.exception("snapshot subscriber %r failed on version %d", subscriber, snapshot.version)
        return snapshot

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)
