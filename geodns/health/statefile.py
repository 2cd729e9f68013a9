"""Last-known health on disk, so a restart during an outage does not send
traffic back to a dead site before the first probes have answered."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodns.health.health import Health, ProbeKey, Status

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


def save(path: Path, states: Mapping[ProbeKey, Health]) -> None:
    """Write atomically (temp file + rename): a crash mid-write leaves the old file."""
    rows = [
        {
            "check": key.check,
            "address": key.address,
            "port": key.port,
            "status": str(h.status),
            "since": h.since,
            "reason": h.reason,
        }
        for key, h in states.items()
        if h.status is not Status.UNKNOWN
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": FORMAT_VERSION, "targets": rows}, indent=1))
    os.replace(tmp, path)


def load(path: Path) -> dict[ProbeKey, Health]:
    """Read what was saved; a missing or unreadable file means nothing is known."""
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable health state file %s: %s", path, exc)
        return {}
    out: dict[ProbeKey, Health] = {}
    try:
        for row in data["targets"]:
            key = ProbeKey(str(row["check"]), str(row["address"]), row["port"])
            since = row.get("since")
            out[key] = Health(
                status=Status(row["status"]),
                reason=str(row.get("reason", "")),
                since=float(since) if since is not None else None,
            )
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring malformed health state file %s: %s", path, exc)
        return {}
    return out
