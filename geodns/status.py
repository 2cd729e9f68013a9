"""The `/v1/status` document: every pool member's state, reason, since and latency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from geodns.config.model import Config
from geodns.health import Health, ProbeKey, probe_key
from geodns.snapshot import HealthSnapshot


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status_document(
    config: Config, snapshot: HealthSnapshot, live: Mapping[ProbeKey, Health], ready: bool
) -> dict[str, Any]:
    """`live` holds the newest per-probe detail (latency, last check); `snapshot`
    the published states that DNS answers use. Their status always agrees."""
    pools = []
    for pool in config.pools.values():
        members = []
        for member in pool.members:
            key = probe_key(pool, member, config.checks)
            health = live.get(key, snapshot.health(key)) if key is not None else None
            members.append(
                {
                    "address": member.address,
                    "dc": member.dc,
                    "weight": member.weight,
                    "probe": None
                    if key is None
                    else {"check": key.check, "address": key.address, "port": key.port},
                    "state": str(snapshot.status(key)),
                    "reason": health.reason if health else "",
                    "since": iso(health.since) if health else None,
                    "last_checked": iso(health.checked) if health else None,
                    "last_latency_ms": None
                    if not health or health.latency is None
                    else round(health.latency * 1000, 3),
                    "last_probe_ok": health.last_ok if health else None,
                    "restored": health.restored if health else False,
                }
            )
        pools.append(
            {
                "name": pool.name,
                "policy": pool.policy,
                "check": pool.check,
                "fallback": pool.fallback,
                "datacenters": list(pool.datacenters),
                "members": members,
            }
        )
    return {"version": snapshot.version, "ready": ready, "pools": pools}
