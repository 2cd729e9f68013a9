"""Helpers for tests about pools rather than zones: a minimal zone, a made-up snapshot."""

from __future__ import annotations

from pathlib import Path

from geodns.config import Config
from geodns.health.health import Health, ProbeKey, Status, probe_keys
from geodns.health.overrides import Override
from geodns.health.snapshot import HealthSnapshot

ZONE_HEAD = """\
origin: example.test.
soa: {mname: ns1.example.test., rname: hostmaster.example.test.}
records:
  "@": {type: NS, value: ns1}
  ns1: {type: A, value: 192.0.2.53}
"""


def write_zone(folder: Path, records: str = "") -> None:
    """zones/example.test.yaml under `folder`: NS, SOA and `records` (YAML lines, indented 2)."""
    (folder / "zones").mkdir(exist_ok=True)
    (folder / "zones" / "example.test.yaml").write_text(ZONE_HEAD + records)


def snapshot(
    config: Config, down: frozenset[str] | set[str] = frozenset(), overrides: tuple[Override, ...] = ()
) -> HealthSnapshot:
    """Every probe target up except the addresses in `down`, plus `overrides`."""
    states: dict[ProbeKey, Health] = {
        key: Health(status=Status.DOWN if key.address in down else Status.UP) for key in probe_keys(config)
    }
    return HealthSnapshot(1, states, overrides)


# Three pools and their names (a weighted, a failover and a geo one with one topology rule).
POOLS = """\
server: {dns_listen: ["127.0.0.1:0", "[::1]:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 1}
datacenters: {par: {}, ams: {}}
pools:
  wt:
    policy: weighted
    members: [{address: 192.0.2.1, dc: par, weight: 3}, {address: 192.0.2.2, dc: ams, weight: 1}]
  fo:
    datacenters: [par, ams]
    members: [{address: 192.0.2.11, dc: par}, {address: 192.0.2.12, dc: ams}]
  geo:
    policy: geo
    datacenters: [par, ams]
    members: [{address: 192.0.2.21, dc: par}, {address: 192.0.2.22, dc: ams}]
topology:
  - {match: 127.0.5.0/24, prefer: [ams]}
"""
POOL_RECORDS = "  wt: {type: A, pool: wt}\n  fo: {type: A, pool: fo}\n  geo: {type: A, pool: geo}\n"
