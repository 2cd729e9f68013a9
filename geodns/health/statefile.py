"""Last-known health on disk, so a restart during an outage does not send
traffic back to a dead site before the first probes have answered."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodns import durable
from geodns.health.health import Health, ProbeKey, Status

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SAVE_EVERY = 1.0  # seconds: health.json is written at most this often


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


class Saver:
    """Writes the states to `path` coalesced and off the loop: at most one write
    every SAVE_EVERY seconds whatever the flap rate (each write fsyncs), the latest
    states encoded on the loop, the disk work in a thread."""

    def __init__(self, path: Path, states: Mapping[ProbeKey, Health]) -> None:
        self.path = path
        self.states = states  # read when a write is due: always the latest
        self.pending = False
        self.writes: set[asyncio.Task[None]] = set()

    def soon(self) -> None:
        if self.pending:
            return
        self.pending = True
        asyncio.get_running_loop().call_later(SAVE_EVERY, self._write_now)

    def _write_now(self) -> None:
        self.pending = False
        task = asyncio.get_running_loop().create_task(self._write(encode(self.states)))
        self.writes.add(task)
        task.add_done_callback(self.writes.discard)

    async def _write(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(durable.write_file, self.path, data)
        except OSError as exc:
            log.error("cannot save health state to %s: %s (states still apply in memory)", self.path, exc)

    async def flush(self) -> None:
        """A write still waiting its turn now, and every write done."""
        if self.pending:
            self.pending = False
            await self._write(encode(self.states))
        for task in list(self.writes):
            with contextlib.suppress(Exception):
                await task
