"""The `/v1/status` document: every pool member's effective and real state,
reason, since and latency, plus the active overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from geodns.config.model import Config
from geodns.health.health import Health, ProbeKey, probe_key
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.policy import member_views
from geodns.timefmt import iso


def status_document(
    config: Config, snapshot: HealthSnapshot, live: Mapping[ProbeKey, Health], ready: bool
) -> dict[str, Any]:
    """`live` holds the newest per-probe detail (latency, last check); `snapshot`
    the published states and overrides that DNS answers use."""
    pools = []
    for pool in config.pools.values():
        members = []
        for view in member_views(pool, config, snapshot):
            member = view.member
            key = probe_key(pool, member, config.checks)
            health = (live.get(key) or snapshot.health(key)) if key is not None else None
            members.append(
                {
                    "address": member.address,
                    "dc": member.dc,
                    "weight": member.weight,
                    "probe": None
                    if key is None
                    else {"check": key.check, "address": key.address, "port": key.port},
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
    return {
        "version": snapshot.version,
        "ready": ready,
        "datacenters": [d.name for d in config.datacenters],
        "overrides": [o.to_json() | {"expires_at": iso(o.expires)} for o in snapshot.overrides],
        "pools": pools,
    }
