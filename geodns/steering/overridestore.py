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
from pathlib import Path

from geodns.config.model import Config
from geodns.health.health import Status
from geodns.health.overrides import Override, OverrideError, check_target, describe_override, parse_target
from geodns.health.snapshot import HealthSnapshot, SnapshotStore
from geodns.steering.policy import member_views

log = logging.getLogger(__name__)

STATE_FILE = "overrides.json"


def load_overrides(path: Path, now: float) -> list[Override]:
    """The unexpired overrides saved at `path` (none when there is no file)."""
    try:
        rows = json.loads(path.read_text())["overrides"]
        loaded = [Override.from_json(row) for row in rows]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, OverrideError) as exc:
        # Losing a drain silently would send traffic back to a site ops took out: say it loudly.
        log.error("cannot read overrides from %s (%s); starting with none", path, exc)
        return []
    return [o for o in loaded if o.expires is None or o.expires > now]


class OverrideStore:
    def __init__(
        self, config: Config, store: SnapshotStore, *, wall: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.wall = wall
        self.path = config.server.state_dir / STATE_FILE
        self.overrides: list[Override] = self._load()
        self._timer: asyncio.TimerHandle | None = None

    def _load(self) -> list[Override]:
        active = load_overrides(self.path, self.wall())
        for o in active:
            log.warning("override restored from %s: %s", self.path, describe_override(o))
        return active

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"overrides": [o.to_json() for o in self.overrides]}, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error(
                "cannot save overrides to %s: %s (they apply now but will not survive a restart)",
                self.path,
                exc,
            )

    def start(self) -> None:
        self._publish(self.store.current())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def add(self, target: str, state: str, reason: str, duration: float | None) -> Override:
        kind, name = parse_target(target)
        check_target(self.config, kind, name)
        if state not in ("up", "down"):
            raise OverrideError(f"state must be up or down, not {state!r}")
        if duration is not None and duration <= 0:
            raise OverrideError("the duration must be positive")
        now = self.wall()
        override = Override(kind, name, Status(state), reason, now, now + duration if duration else None)
        before = self.store.current()
        # One override per target: a new drain of dc=par replaces the old one.
        self.overrides = [o for o in self.overrides if o.target != override.target] + [override]
        self._save()
        self._publish(before)
        return override

    def remove(self, target: str) -> list[Override]:
        kind, name = parse_target(target)
        gone = [o for o in self.overrides if (o.kind, o.name) == (kind, name)]
        if gone:
            before = self.store.current()
            self.overrides = [o for o in self.overrides if o not in gone]
            self._save()
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
            self._save()

    def expire(self) -> None:
        now = self.wall()
        expired = [o for o in self.overrides if o.expires is not None and o.expires <= now]
        if expired:
            before = self.store.current()
            for o in expired:
                log.warning("override %s expired (%s)", o.target, o.reason)
            self.overrides = [o for o in self.overrides if o not in expired]
            self._save()
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
                )
