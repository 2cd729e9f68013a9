"""Opening MaxMind DB files (memory-mapped, the C extension) and looking addresses
up in them. A process keeps one reader per file version: a file replaced on disk
(geoipupdate writes a new one and renames it) is a new identity, read afresh on
the next open, while answers in flight keep the old reader."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import maxminddb

from geodns.errors import GeoDnsError
from geodns.geoip.info import GeoInfo, from_records

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Identity = tuple[str, int, int, int]  # path, inode, size, mtime in ns

_OPEN: dict[Identity, Any] = {}
MAX_KNOWN = 262_144  # database networks remembered per process (then start over)


class GeoIPError(GeoDnsError):
    """A database that cannot be used: missing, unreadable, not a MaxMind DB."""


def identity(path: Path) -> Identity:
    info = path.stat()
    return (str(path), info.st_ino, info.st_size, info.st_mtime_ns)


def open_reader(path: Path) -> Any:
    """The reader for the file as it is now (one per process and file version)."""
    try:
        key = identity(path)
    except OSError as exc:
        raise GeoIPError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = _OPEN.get(key)
    if reader is None:
        try:
            reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
            reader.metadata()
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoIPError(f"{path} is not a usable MaxMind DB: {exc}") from None
        for old in [k for k in _OPEN if k[0] == key[0]]:
            del _OPEN[old]  # the file was replaced: readers holding it stay valid until dropped
        _OPEN[key] = reader
    return reader


class GeoDatabase:
    """The City/Country database and, optionally, the ASN one."""

    def __init__(self, path: Path, asn_path: Path | None = None) -> None:
        self.path = path
        self.asn_path = asn_path
        self.reader = open_reader(path)
        self.asn_reader = open_reader(asn_path) if asn_path is not None else None
        self.ip_version = int(self.reader.metadata().ip_version)
        # One GeoInfo per database network: reading a record into one costs more than
        # the lookup itself, and a million client subnets sit in far fewer networks.
        self._known: dict[tuple[int, int, int, int, int], GeoInfo] = {}

    def lookup(self, address: IPAddress) -> GeoInfo:
        """What the databases say; an address they do not know gets an empty GeoInfo,
        with the prefix over which they do not know it. An IPv4-mapped IPv6 address
        (::ffff:a.b.c.d) is the IPv4 one, its prefix counted in IPv6 bits."""
        mapped = address.ipv4_mapped if address.version == 6 else None
        if mapped is not None:
            info = self.lookup(mapped)
            return dataclasses.replace(info, prefix=info.prefix + 96)
        city, prefix = self._get(self.reader, address)
        asn, asn_prefix = self._get(self.asn_reader, address) if self.asn_reader is not None else (None, 0)
        bits, width = int(address), address.max_prefixlen
        key = (address.version, bits >> (width - prefix), prefix, bits >> (width - asn_prefix), asn_prefix)
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= MAX_KNOWN:
                self._known.clear()
            found = self._known[key] = from_records(city, prefix, asn, asn_prefix)
        return found

    @staticmethod
    def _get(reader: Any, address: IPAddress) -> tuple[Any, int]:
        if address.version == 6 and reader.metadata().ip_version == 4:
            return None, 0  # an IPv4-only database knows nothing of IPv6: the whole space
        try:
            record, prefix = reader.get_with_prefix_len(address)
        except (ValueError, maxminddb.InvalidDatabaseError):
            return None, address.max_prefixlen  # a damaged entry: nothing known, for this address only
        return record, int(prefix)


def describe(path: Path) -> str:
    """'GeoLite2-City, built 2026-11-24, IPv6' for logs."""
    meta = open_reader(path).metadata()
    built = os.path.getmtime(path)
    del built
    return f"{meta.database_type}, IPv{meta.ip_version}, {meta.node_count} nodes"


def lookup_for(
    database: Path | None, asn_database: Path | None = None
) -> Callable[[IPAddress], GeoInfo] | None:
    """The lookup answers use, or None without a database."""
    if database is None:
        return None
    return GeoDatabase(database, asn_database).lookup


async def watch_files(
    paths: Callable[[], list[Path | None]], interval: Callable[[], float]
) -> AsyncIterator[None]:
    """Yields each time one of `paths` (asked anew each round) is another file than
    before: replaced, changed, gone or back. Polling: geoipupdate runs weekly."""

    def seen() -> list[object]:
        out: list[object] = []
        for path in paths():
            try:
                out.append(identity(path) if path is not None else None)
            except OSError as exc:
                out.append(str(exc))
        return out

    last = seen()
    while True:
        await asyncio.sleep(interval())
        now = seen()
        if now != last:
            last = now
            yield None
