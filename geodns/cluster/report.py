"""What an instance tells its peers: its own probes' view of every target (pure).

A report is compact JSON: one array per target. A peer's reply is checked field
by field before anything of it is used; whatever is wrong makes a
`ReportError` naming it (the peer is then not counted), never an exception
that escapes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from geodns.config.model import Config
from geodns.health.health import Health, ProbeKey, Status, probe_keys

MAX_REPORT = 16 * 1024 * 1024  # bytes: ~100,000 targets; a bigger reply is refused
_STATUSES = {s.value: s for s in Status}


class ReportError(ValueError):
    """A peer's reply that cannot be used, and why."""


class Observation(NamedTuple):
    status: Status
    reason: str
    since: float | None  # wall time of its last change, as the peer saw it
    checked: float | None  # wall time of its last probe result


@dataclass(frozen=True)
class Report:
    name: str
    datacenter: str | None
    boot: str  # changes when the instance restarts: its sequence numbers start over
    seq: int  # grows with every change of the instance's own statuses
    config_hash: str
    targets: Mapping[ProbeKey, Observation]
    route53: bool = False  # it would write Route53 (mode route53 or both): a writer candidate


def observations(states: Mapping[ProbeKey, Health]) -> dict[ProbeKey, Observation]:
    return {
        key: Observation(h.status, h.reason if h.status is Status.DOWN else "", h.since, h.checked)
        for key, h in states.items()
    }


def config_hash(config: Config) -> str:
    """A digest of what decides health: the targets and how they are checked. Peers
    whose hashes differ are shown, and still counted (each judges what it probes)."""
    parts = sorted(repr(key) for key in probe_keys(config))
    parts += sorted(repr(check) for check in config.checks.values())
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def encode(report: Report) -> bytes:
    targets = [
        [key.check, key.address, key.port, obs.status.value, obs.reason, obs.since, obs.checked]
        for key, obs in report.targets.items()
    ]
    body = {
        "name": report.name,
        "datacenter": report.datacenter,
        "boot": report.boot,
        "seq": report.seq,
        "config_hash": report.config_hash,
        "route53": report.route53,
        "targets": targets,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def encode_unchanged(report: Report) -> bytes:
    """The long-poll's answer when nothing changed: proof of life, no targets."""
    body = {"name": report.name, "boot": report.boot, "seq": report.seq, "unchanged": True}
    return json.dumps(body, separators=(",", ":")).encode()


def _field(
    body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, optional: bool = False
) -> Any:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ReportError(f"{key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _time(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ReportError(f"{what} is not a time")
    return float(value)


def decode(body: bytes, previous: Report | None) -> Report:
    """A peer's reply -> its report (an unchanged one: `previous` again)."""
    if len(body) > MAX_REPORT:
        raise ReportError(f"reply of {len(body)} bytes is over {MAX_REPORT}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError("not a JSON object")
    name = _field(data, "name", str)
    boot = _field(data, "boot", str)
    seq = _field(data, "seq", int)
    if data.get("unchanged") is True:
        if previous is None or previous.boot != boot or previous.seq != seq or previous.name != name:
            raise ReportError("says unchanged, but not from the report held")
        return previous
    datacenter = _field(data, "datacenter", str, optional=True)
    digest = _field(data, "config_hash", str)
    rows = _field(data, "targets", list)
    targets: dict[ProbeKey, Observation] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 7:
            raise ReportError(f"targets[{i}] is not a 7-item list")
        check, address, port, status, reason, since, checked = row
        if not isinstance(check, str) or not isinstance(address, str):
            raise ReportError(f"targets[{i}]: check and address must be strings")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
            raise ReportError(f"targets[{i}]: bad port {port!r}")
        if status not in _STATUSES:
            raise ReportError(f"targets[{i}]: unknown status {status!r}")
        if not isinstance(reason, str):
            raise ReportError(f"targets[{i}]: reason must be a string")
        targets[ProbeKey(check, address, port)] = Observation(
            _STATUSES[status],
            reason[:500],
            _time(since, f"targets[{i}] since"),
            _time(checked, f"targets[{i}] checked"),
        )
    route53 = data.get("route53", False)
    if not isinstance(route53, bool):
        raise ReportError("'route53' is not a boolean")
    return Report(name, datacenter, boot, seq, digest, targets, route53)
