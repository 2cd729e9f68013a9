"""GeoIP databases written by the tests themselves (mmdb-writer), in the shape of
GeoIP2/GeoLite2 City and ASN records, for exact cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def city(
    country: str | None,
    continent: str | None,
    lat: float | None = None,
    lon: float | None = None,
    subdivision: str | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {}
    if country:
        record["country"] = {"iso_code": country}
    if continent:
        record["continent"] = {"code": continent}
    if lat is not None and lon is not None:
        record["location"] = {"latitude": lat, "longitude": lon}
    if subdivision:
        record["subdivisions"] = [{"iso_code": subdivision}]
    return record


def write(path: Path, networks: dict[str, dict[str, Any]], kind: str = "GeoIP2-City") -> Path:
    """An IPv6 database with IPv4 mapped in (as MaxMind's are); more specific networks
    written after the broader ones they sit in."""
    writer = MMDBWriter(ip_version=6, database_type=kind, ipv4_compatible=True)
    for network in sorted(networks, key=lambda n: int(n.split("/")[1]) + (1000 if ":" in n else 0)):
        writer.insert_network(IPSet([network]), networks[network])
    writer.to_db_file(str(path))
    return path
