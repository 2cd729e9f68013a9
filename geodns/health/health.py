"""Health state and rise/fall hysteresis (pure: `now` is always passed in).

A member is `unknown` until its first probe result, which decides at once
(nothing better is known). After that it takes `fall` failures in a row to go
down and `rise` successes in a row to come back, so one lost packet does not
move traffic and one lucky probe does not send it back to a sick site.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from geodns.config.model import Check, Config, Member, Pool


class Status(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class ProbeKey(NamedTuple):
    """One probe target: members of several pools sharing it are probed once.
    A named tuple: hashed and compared in C, as every pool decision looks up
    every member's state by it."""

    check: str
    address: str
    port: int | None


@dataclass(frozen=True, slots=True)
class Health:
    status: Status = Status.UNKNOWN
    successes: int = 0  # in a row
    failures: int = 0  # in a row
    reason: str = ""  # the last failure's reason ("" when none yet)
    since: float | None = None  # wall time of the last status change
    checked: float | None = None  # wall time of the last probe result
    latency: float | None = None  # seconds, last probe
    last_ok: bool | None = None
    restored: bool = False  # status read from disk at start-up, no fresh probe yet
    held: bool = False  # the last attempt failed on this host's side (a checker error): status held

    @property
    def fresh(self) -> bool:
        return self.checked is not None and not self.restored


UNKNOWN_HEALTH = Health()


def step(
    h: Health, ok: bool, reason: str, now: float, *, rise: int, fall: int, latency: float | None = None
) -> Health:
    successes = h.successes + 1 if ok else 0
    failures = 0 if ok else h.failures + 1
    status, since = h.status, h.since
    if h.status is Status.UNKNOWN:
        status, since = (Status.UP if ok else Status.DOWN), now
    elif h.status is Status.UP and failures >= fall:
        status, since = Status.DOWN, now
    elif h.status is Status.DOWN and successes >= rise:
        status, since = Status.UP, now
    return Health(
        status=status,
        successes=successes,
        failures=failures,
        reason=h.reason if ok else reason,
        since=since,
        checked=now,
        latency=latency,
        last_ok=ok,
        restored=False,
    )


def describe(old: Health, new: Health) -> str:
    """'up -> down after 3 failures: HTTP 503 ...' for logs and events."""
    head = f"{old.status} -> {new.status}"
    if old.status is Status.UNKNOWN:
        return f"{head}: first probe {'succeeded' if new.last_ok else 'failed: ' + new.reason}"
    if new.status is Status.DOWN:
        n = new.failures
        return f"{head} after {n} failure{'s' if n != 1 else ''}: {new.reason}"
    n = new.successes
    return f"{head} after {n} success{'es' if n != 1 else ''}"


def probe_key(pool: Pool, member: Member, checks: Mapping[str, Check]) -> ProbeKey | None:
    """The probe deciding a member's health, or None when its pool has no check."""
    if pool.check is None:
        return None
    check = checks[pool.check]
    port = member.check_port or check.default_port
    return ProbeKey(check.name, member.check_address or member.address, port)


def probe_keys(config: Config) -> dict[ProbeKey, list[tuple[Pool, Member]]]:
    """Every unique probe and the pool members that depend on it."""
    out: dict[ProbeKey, list[tuple[Pool, Member]]] = {}
    for pool in config.pools.values():
        for member in pool.members:
            key = probe_key(pool, member, config.checks)
            if key is not None:
                out.setdefault(key, []).append((pool, member))
    return out


def restore(saved: Health) -> Health:
    """A persisted state, to be used until a fresh probe says otherwise."""
    return dataclasses.replace(saved, successes=0, failures=0, restored=True, checked=None, latency=None)
