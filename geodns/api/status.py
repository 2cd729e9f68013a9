"""The `/v1/status` document: every pool member's effective and real state,
reason, since and latency, plus the active overrides."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from geodns.config.model import Config, Pool
from geodns.health.health import Health, ProbeKey, probe_key
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import iter_member_views
from geodns.timefmt import iso

MEMBERS_PER_STEP = 50
Votes = Callable[[ProbeKey], dict[str, Any] | None]  # with peers: who says what about a target


def status_document(
    config: Config,
    snapshot: HealthSnapshot,
    live: Mapping[ProbeKey, Health],
    ready: bool,
    votes: Votes | None = None,
) -> dict[str, Any]:
    """`live` holds the newest per-probe detail (latency, last check); `snapshot`
    the published states and overrides that DNS answers use."""
    doc = _head(config, snapshot, ready)
    doc["pools"] = [
        _pool(pool) | {"members": list(_members(pool, config, snapshot, live, votes))}
        for pool in config.pools.values()
    ]
    return doc


def status_steps(
    config: Config,
    snapshot: HealthSnapshot,
    live: Mapping[ProbeKey, Health],
    ready: bool,
    votes: Votes | None = None,
) -> Iterator[bytes | None]:
    """The same document as JSON bytes, in pieces (None between steps), so that
    2,000 members never hold the answer loop at once. `live` must be a copy: probes
    keep updating the monitor's own table meanwhile."""
    head = json.dumps(_head(config, snapshot, ready))
    yield head[:-1].encode() + b', "pools": ['
    for i, pool in enumerate(config.pools.values()):
        pool_head = json.dumps(_pool(pool))
        yield (b", " if i else b"") + pool_head[:-1].encode() + b', "members": ['
        for j, member in enumerate(_members(pool, config, snapshot, live, votes)):
            yield (b", " if j else b"") + json.dumps(member).encode()
            if j % MEMBERS_PER_STEP == MEMBERS_PER_STEP - 1:
                yield None
        yield b"]}"
    yield b"]}"


def _head(config: Config, snapshot: HealthSnapshot, ready: bool) -> dict[str, Any]:
    return {
        "version": snapshot.version,
        "ready": ready,
        "datacenters": [d.name for d in config.datacenters],
        "overrides": [o.to_json() | {"expires_at": iso(o.expires)} for o in snapshot.overrides],
    }


def _pool(pool: Pool) -> dict[str, Any]:
    return {
        "name": pool.name,
        "policy": pool.policy,
        "check": pool.check,
        "fallback": pool.fallback,
        "datacenters": list(pool.datacenters),
    }


def _members(
    pool: Pool,
    config: Config,
    snapshot: HealthSnapshot,
    live: Mapping[ProbeKey, Health],
    votes: Votes | None,
) -> Iterator[dict[str, Any]]:
    for view in iter_member_views(pool, config, snapshot):
        member = view.member
        key = probe_key(pool, member, config.checks)
        health = (live.get(key) or snapshot.health(key)) if key is not None else None
        voted = votes(key) if votes is not None and key is not None else None
        if voted is not None and health is not None and key is not None:
            decided = snapshot.health(key)
            if decided.status is not health.status:  # the vote overrules this instance's probes
                health = decided
        yield {
            "votes": voted,
            "address": member.address,
            "dc": member.dc,
            "weight": member.weight,
            "probe": None if key is None else {"check": key.check, "address": key.address, "port": key.port},
            "state": str(view.effective),
            "real_state": str(view.real),
            "forced_by": view.forced_by.to_json() if view.forced_by else None,
            "reason": health.reason if health else "",
            "since": iso(health.since) if health else None,
            "last_checked": iso(health.checked) if health else None,
            "last_latency_ms": None
            if not health or health.latency is None
            else round(health.latency * 1000, 3),
            "last_probe_ok": health.last_ok if health else None,
            "restored": health.restored if health else False,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
