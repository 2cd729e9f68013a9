"""Shared by the benchmarks: a minimal zone."""

from __future__ import annotations

from pathlib import Path

ZONE_HEAD = """\
origin: example.test.
soa: {mname: ns1.example.test., rname: hostmaster.example.test.}
records:
  "@": {type: NS, value: ns1}
  ns1: {type: A, value: 192.0.2.53}
"""


def write_zone(folder: Path, records: str = "") -> None:
    (folder / "zones").mkdir(exist_ok=True)
    (folder / "zones" / "z.yaml").write_text(ZONE_HEAD + records)
