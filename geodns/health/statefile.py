"""Last-known health on disk, so a restart during an outage does not send
traffic back to a dead site before the first probes have answered."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodns.health.health import Health, ProbeKey, Status

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


LATEST_TIME = 32503680000.0  # 3000-01-01: any later time in a file is a corruption


def encode(states: Mapping[ProbeKey, Health]) -> bytes:
    """The states worth keeping (not unknown), compact: written often in a flap storm."""
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
    return json.dumps({"version": FORMAT_VERSION, "targets": rows}, separators=(",", ":")).encode()


def load(path: Path) -> dict[ProbeKey, Health]:
    """Read what was saved, row by row: a bad row is skipped with a warning, the
    rest kept; a missing or unreadable file means nothing is known. Every value is
    range-checked: nothing in this file can crash a start-up."""
    try:
        data: Any = json.loads(path.read_bytes())
        rows = data["targets"] if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ValueError('no "targets" list')
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        log.warning("ignoring unreadable health state file %s: %s", path, exc)
        return {}
    out: dict[ProbeKey, Health] = {}
    for i, row in enumerate(rows):
        try:
            key, health = _row(row)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring entry %d of health state file %s: %s", i + 1, path, exc)
            continue
        out[key] = health
    return out


def _row(row: Any) -> tuple[ProbeKey, Health]:
    if not isinstance(row, dict):
        raise TypeError("not an object")
    check, address, port = row["check"], row["address"], row["port"]
    if not isinstance(check, str) or not isinstance(address, str):
        raise TypeError("check and address must be strings")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ValueError(f"bad port {port!r}")
    status = Status(row["status"])
    since = row.get("since")
    if since is not None and (
        isinstance(since, bool) or not isinstance(since, int | float) or not 0 <= since <= LATEST_TIME
    ):
        raise ValueError(f"since must be a Unix time between 1970 and 3000, not {since!r}")
    reason = row.get("reason", "")
    if not isinstance(reason, str):
        raise TypeError("reason must be a string")
    return ProbeKey(check, address, port), Health(
        status=status, reason=reason[:1000], since=float(since) if since is not None else None
    )
