"""The `/v1/status` document: every pool member's effective and real state,
reason, since and latency, plus the active overrides."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from geodns.config.model import Config, Pool
from geodns.health.health import Health, ProbeKey, Status, probe_key
from geodns.health.history import History
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import iter_member_views
from geodns.timefmt import iso

MEMBERS_PER_STEP = 50
Votes = Callable[[ProbeKey], dict[str, Any] | None]  # with peers: who says what about a target


@dataclass(frozen=True)
class Story:
    """What the status page tells beyond the states: where each pool answers from
    since when, recent changes, each target's last results, Route53 sync."""

    pools: Callable[[str], dict[str, Any] | None]
    history: History
    extra: Callable[[], dict[str, Any]] = dict  # e.g. {"route53": {...}}


def status_document(
    config: Config,
    snapshot: HealthSnapshot,
    live: Mapping[ProbeKey, Health],
    ready: bool,
    votes: Votes | None = None,
    story: Story | None = None,
) -> dict[str, Any]:
    """`live` holds the newest per-probe detail (latency, last check); `snapshot`
    the published states and overrides that DNS answers use."""
    doc = _head(config, snapshot, ready, story)
    doc["pools"] = [
        _pool(pool, story) | {"members": list(_members(pool, config, snapshot, live, votes, story))}
        for pool in config.pools.values()
    ]
    return doc


def status_steps(
    config: Config,
    snapshot: HealthSnapshot,
    live: Mapping[ProbeKey, Health],
    ready: bool,
    votes: Votes | None = None,
    story: Story | None = None,
) -> Iterator[bytes | None]:
    """The same document as JSON bytes, in pieces (None between steps), so that
    2,000 members never hold the answer loop at once. `live` must be a copy: probes
    keep updating the monitor's own table meanwhile."""
    head = json.dumps(_head(config, snapshot, ready, story))
    yield head[:-1].encode() + b', "pools": ['
    for i, pool in enumerate(config.pools.values()):
        pool_head = json.dumps(_pool(pool, story))
        yield (b", " if i else b"") + pool_head[:-1].encode() + b', "members": ['
        for j, member in enumerate(_members(pool, config, snapshot, live, votes, story)):
            yield (b", " if j else b"") + json.dumps(member).encode()
            if j % MEMBERS_PER_STEP == MEMBERS_PER_STEP - 1:
                yield None
        yield b"]}"
    yield b"]}"


def _head(config: Config, snapshot: HealthSnapshot, ready: bool, story: Story | None) -> dict[str, Any]:
    head = {
        "version": snapshot.version,
        "ready": ready,
        "datacenters": [d.name for d in config.datacenters],
        "overrides": [
            o.to_json() | {"created_at": iso(o.created), "expires_at": iso(o.expires)}
            for o in snapshot.overrides
        ],
    }
    if story is not None:
        head["events"] = story.history.recent()
        head |= story.extra()
    return head


def _pool(pool: Pool, story: Story | None) -> dict[str, Any]:
    return {
        "name": pool.name,
        "policy": pool.policy,
        "check": pool.check,
        "fallback": pool.fallback,
        "datacenters": list(pool.datacenters),
        "now": story.pools(pool.name) if story is not None else None,
    }


def _members(
    pool: Pool,
    config: Config,
    snapshot: HealthSnapshot,
    live: Mapping[ProbeKey, Health],
    votes: Votes | None,
    story: Story | None = None,
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
            # The reason of the last failure only while it explains a state: an up
            # member showing an old "connection refused" sends people the wrong way.
            "reason": health.reason if health and view.real is not Status.UP else "",
            "history": story.history.strip(key) if story is not None and key is not None else [],
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
