"""Check kinds, one module each behind the `Probe` interface, registered here."""

from __future__ import annotations

from collections.abc import Callable

from geodns.config.model import Check
from geodns.health.checks.base import Probe, ProbeResult, Target
from geodns.health.checks.exec import ExecProbe
from geodns.health.checks.http import HttpProbe
from geodns.health.checks.tcp import TcpProbe

REGISTRY: dict[str, Callable[[Check], Probe]] = {
    "http": HttpProbe,
    "https": HttpProbe,
    "tcp": TcpProbe,
    "exec": ExecProbe,
}


def make_probe(check: Check) -> Probe:
    return REGISTRY[check.type](check)


__all__ = ["REGISTRY", "Probe", "ProbeResult", "Target", "make_probe"]
