"""Overrides at run time: add, remove, expire, persist, publish, log.

Every change publishes a new snapshot and logs each member whose effective
state moved: `member 192.0.2.10 (par, pool web): up -> down (forced by dc=par:
power work, until 2026-11-26 18:00:00Z)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geodns import durable
from geodns.config.model import Config
from geodns.errors import GeoDnsError
from geodns.health.health import Status
from geodns.health.history import Event, History
from geodns.health.overrides import (
    MAX_BY,
    Override,
    OverrideError,
    check_target,
    describe_override,
    parse_target,
)
from geodns.health.snapshot import HealthSnapshot, SnapshotStore
from geodns.steering.policy import member_views

log = logging.getLogger(__name__)

STATE_FILE = "overrides.json"


class StateNotSaved(GeoDnsError):
    """Operator state could not be written: nothing was changed."""


@dataclass
class Loaded:
    overrides: list[Override]
    problems: list[str]  # what could not be read: drains may be missing


def load_overrides(path: Path, now: float, *, move_aside: bool = True) -> Loaded:
    """The unexpired overrides saved at `path`, entry by entry: a bad entry is
    reported and skipped, every good one kept. A file that cannot be read at all is
    moved aside as `overrides.json.corrupt-<UTC time>` (never overwritten: it is
    the evidence; one-shot commands leave it) and said loudly; nothing here raises."""
    if not path.exists() and not path.is_symlink():
        return Loaded([], [])
    try:
        doc = json.loads(path.read_bytes())
        rows = doc["overrides"] if isinstance(doc, dict) else None
        if not isinstance(rows, list):
            raise ValueError('no "overrides" list')
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        aside = _move_aside(path) if move_aside else "left as it is"
        problem = f"{path} could not be read ({exc}); {aside}"
        log.error("drains may be missing: %s", problem)
        return Loaded([], [problem])
    loaded, problems = [], []
    for i, row in enumerate(rows):
        try:
            loaded.append(Override.from_json(row))
        except OverrideError as exc:
            problem = f"{path}: entry {i + 1} skipped: {exc}"
            log.error("drains may be missing: %s", problem)
            problems.append(problem)
    return Loaded([o for o in loaded if o.expires is None or o.expires > now], problems)


def _move_aside(path: Path) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.rename(path, aside)
    except OSError as exc:
        return f"it could not be moved aside either ({exc}); it is left as it is"
    return f"kept as {aside.name}"


class OverrideStore:
    def __init__(
        self, config: Config, store: SnapshotStore, *, wall: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.wall = wall
        self.path = config.server.state_dir / STATE_FILE
        loaded = load_overrides(self.path, self.wall())
        for o in loaded.overrides:
            log.warning("override restored from %s: %s", self.path, describe_override(o))
        self.overrides: list[Override] = loaded.overrides
        # Until an operator acts (a drain written, or `geodns ack`), say that drains may be missing.
        self.problems: list[str] = loaded.problems
        self._timer: asyncio.TimerHandle | None = None
        self.history: History | None = None  # forced changes join the status page's timeline

    def _persist(self, overrides: list[Override]) -> None:
        """Durably on disk before anything is applied or acknowledged: a write that
        fails raises (the API answers 503) and changes nothing."""
        data = json.dumps({"overrides": [o.to_json() for o in overrides]}, indent=1).encode()
        try:
            durable.write_file(self.path, data)
        except OSError as exc:
            log.error("cannot save overrides to %s: %s; nothing was changed", self.path, exc)
            raise StateNotSaved(f"cannot save overrides to {self.path}: {exc}; nothing was changed") from exc

    def acknowledge(self) -> list[str]:
        """An operator has seen that drains may be missing: stop saying it."""
        said, self.problems = self.problems, []
        if said:
            log.warning("acknowledged: %d problem(s) reading saved overrides", len(said))
        return said

    def _save_quietly(self) -> None:
        """Saving what expiry or a reload changed: nobody to answer 503 to, and the
        change applies anyway (an expired drain is over whatever the disk says)."""
        with contextlib.suppress(StateNotSaved):
            self._persist(self.overrides)

    def start(self) -> None:
        self._publish(self.store.current())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def add(self, target: str, state: str, reason: str, duration: float | None, by: str = "") -> Override:
        kind, name = parse_target(target)
        check_target(self.config, kind, name)
        if state not in ("up", "down"):
            raise OverrideError(f"state must be up or down, not {state!r}")
        if duration is not None and duration <= 0:
            raise OverrideError("the duration must be positive")
        now = self.wall()
        override = Override(
            kind, name, Status(state), reason, now, now + duration if duration else None, by[:MAX_BY]
        )
        before = self.store.current()
        # One override per target: a new drain of dc=par replaces the old one.
        wanted = [o for o in self.overrides if o.target != override.target] + [override]
        self._persist(wanted)
        self.overrides = wanted
        self.problems = []  # an operator is acting on drains: they have seen them
        self._publish(before)
        return override

    def remove(self, target: str) -> list[Override]:
        kind, name = parse_target(target)
        gone = [o for o in self.overrides if (o.kind, o.name) == (kind, name)]
        if not gone:
            check_target(self.config, kind, name)  # a typo is named as one, not as "no override"
        if gone:
            before = self.store.current()
            wanted = [o for o in self.overrides if o not in gone]
            self._persist(wanted)
            self.overrides = wanted
            self.problems = []
            self._publish(before)
        return gone

    def update(self, config: Config) -> None:
        """A reload: keep overrides whose target still exists (a removed dc's drain goes)."""
        self.config = config
        kept = []
        for o in self.overrides:
            try:
                check_target(config, o.kind, o.name)
                kept.append(o)
            except OverrideError as exc:
                log.warning("dropping override %s after reload: %s", o.target, exc)
        if kept != self.overrides:
            self.overrides = kept
            self._save_quietly()

    def expire(self) -> None:
        now = self.wall()
        expired = [o for o in self.overrides if o.expires is not None and o.expires <= now]
        if expired:
            before = self.store.current()
            for o in expired:
                log.warning("override %s expired (%s)", o.target, o.reason)
            self.overrides = [o for o in self.overrides if o not in expired]
            self._save_quietly()
            self._publish(before)
        else:
            self._arm()

    def _publish(self, before: HealthSnapshot) -> None:
        after = self.store.publish(overrides=tuple(self.overrides))
        self._log_changes(before, after)
        self._arm()

    def _arm(self) -> None:
        """Wake up at the next expiry (plain loop timer: no task to leak or cancel)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = [o.expires for o in self.overrides if o.expires is not None]
        if pending:
            delay = max(0.0, min(pending) - self.wall())
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to wake
                self._timer = asyncio.get_running_loop().call_later(delay, self.expire)

    def _log_changes(self, before: HealthSnapshot, after: HealthSnapshot) -> None:
        for pool in self.config.pools.values():
            old = member_views(pool, self.config, before)
            new = member_views(pool, self.config, after)
            for a, b in zip(old, new, strict=True):
                if a.effective is b.effective and a.forced_by == b.forced_by:
                    continue
                m = b.member
                why = (
                    describe_override(b.forced_by) if b.forced_by else f"override lifted, probes say {b.real}"
                )
                log.warning(
                    "member %s (%s, pool %s): %s -> %s (%s)",
                    m.address,
                    m.dc,
                    pool.name,
                    a.effective,
                    b.effective,
                    why,
                    extra={
                        "event": "state_change",
                        "member": m.address,
                        "pool": pool.name,
                        "dc": m.dc,
                        "old": str(a.effective),
                        "new": str(b.effective),
                        "reason": why,
                        "forced": b.forced_by is not None,
                        "target": b.forced_by.target if b.forced_by else None,
                    },
                )
                if self.history is not None:
                    self.history.add(
                        Event(
                            self.wall(),
                            f"member {m.address}",
                            str(a.effective),
                            str(b.effective),
                            why,
                            forced=b.forced_by is not None,
                            pool=pool.name,
                            dc=m.dc,
                        )
                    )
