"""Compiled zones on disk, so a restart does not re-read YAML it has read before.

Reading a 100,000-record zone from YAML takes seconds (libyaml plus building the
located tree); a restart during an outage should not wait for that. After a
zone file loads cleanly, its records are written under state_dir/zonecache,
keyed by a hash of everything the zone was built from: the file's bytes and
mtime (the default SOA serial), the pools it references, and the geodns
version. A key that matches means the same input was already validated, so the
result is the same; anything else is a miss and the YAML is read again.

The file is data only: JSON, one record set per line, a SHA-256 of the lines
at the end, every value type-checked as it is read. A planted or damaged file
can only fail to load (the YAML is read instead, and the reason logged); it can
never run code, as the pickle this replaced could. Files are 0600 in a 0700
folder, and a cache file or folder that others may write is not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from geodns import __version__
from geodns.config.model import Pool
from geodns.steps import drain
from geodns.zone.names import Name
from geodns.zone.zone import (
    CAA,
    MX,
    SOA,
    SRV,
    TXT,
    Address,
    Entry,
    PoolRRset,
    RData,
    RRset,
    RType,
    Target,
    Zone,
    build_zone_steps,
    new_address,
    new_rrset,
)

log = logging.getLogger(__name__)

FORMAT = 3  # 3: record sets in chunks, owners relative to the origin
MAGIC = "geodns zone cache"
SUFFIX = ".zone"
STEP = 16  # record sets decoded per step (~0.1 ms here)
CHUNK = 128  # record sets per line: one json.loads each (~50 us), far fewer lines to checksum


class BadCache(ValueError):
    """A cache file that does not hold what we wrote."""


def cache_key(data: bytes, mtime: int, pools: Mapping[str, Pool]) -> str:
    h = hashlib.sha256()
    h.update(f"{FORMAT}/{__version__}/{mtime}/".encode())
    h.update(repr(sorted(pools.items())).encode())
    h.update(data)
    return h.hexdigest()


# --- encoding: Zone <-> lines of JSON ------------------------------------------------


def _rdata(rtype: int, rdata: RData) -> Any:
    if isinstance(rdata, Address):
        return rdata.text
    if isinstance(rdata, Target):
        return list(rdata.name)
    if isinstance(rdata, MX):
        return [rdata.preference, list(rdata.exchange)]
    if isinstance(rdata, TXT):
        return [s.decode("latin-1") for s in rdata.strings]
    if isinstance(rdata, SRV):
        return [rdata.priority, rdata.weight, rdata.port, list(rdata.target)]
    if isinstance(rdata, CAA):
        return [rdata.flags, rdata.tag, rdata.value]
    if isinstance(rdata, SOA):
        times = [rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum]
        return [list(rdata.mname), list(rdata.rname), *times]
    raise TypeError(f"cannot cache {type(rdata).__name__} in type {rtype}")


def _owner(name: Name, origin: Name) -> Any:
    """An owner under the origin as its relative labels joined by dots ("" for the
    origin itself), anything else as a list of labels."""
    above = len(name) - len(origin)
    if above >= 0 and name[above:] == origin and not any("." in label for label in name[:above]):
        return ".".join(name[:above])
    return list(name)


def _entry(entry: Entry, origin: Name) -> list[Any]:
    if isinstance(entry, PoolRRset):
        body: Any = {"pool": entry.pool}
    else:
        body = [_rdata(entry.rtype, r) for r in entry.rdatas]
    return [_owner(entry.name, origin), entry.rtype, entry.ttl, body]


def encode(zone: Zone) -> Iterator[str]:
    """The zone as lines: a header, the record sets (the SOA first) CHUNK to a
    line, a checksum trailer."""
    entries = [e for node in zone.nodes.values() for e in node.values() if e is not zone.soa]
    yield json.dumps({"magic": MAGIC, "format": FORMAT, "origin": list(zone.origin), "entries": len(entries)})
    digest = hashlib.sha256()
    everything = [zone.soa, *entries]
    for start in range(0, len(everything), CHUNK):
        line = json.dumps(
            [_entry(e, zone.origin) for e in everything[start : start + CHUNK]], separators=(",", ":")
        )
        digest.update(line.encode())
        yield line
    yield json.dumps({"sha256": digest.hexdigest()})


_ADDRESS_TYPES = frozenset({int(RType.A), int(RType.AAAA)})
_LABELS: dict[str, str] = {}  # one str object per distinct label: a zone repeats its suffix a million times


def _name(value: Any) -> Name:
    if not isinstance(value, list) or not all(isinstance(label, str) and label for label in value):
        raise BadCache(f"not a name: {value!r}")
    if len(_LABELS) > 65536:
        _LABELS.clear()  # distinct labels (h1, h2, ...) would otherwise accumulate
    return tuple([_LABELS.setdefault(label, label) for label in value])


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise BadCache(f"not a 32-bit unsigned number: {value!r}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise BadCache(f"not a string: {value!r}")
    return value


def _fields(value: Any, n: int) -> list[Any]:
    if not isinstance(value, list) or len(value) != n:
        raise BadCache(f"expected {n} fields, got {value!r}")
    return value


def _decode_rdata(rtype: int, value: Any) -> RData:
    if rtype in (RType.A, RType.AAAA):
        return Address(_str(value))
    if rtype in (RType.CNAME, RType.NS, RType.PTR):
        return Target(_name(value))
    if rtype == RType.MX:
        pref, exchange = _fields(value, 2)
        return MX(_int(pref), _name(exchange))
    if rtype == RType.TXT:
        if not isinstance(value, list) or not value:
            raise BadCache(f"not TXT strings: {value!r}")
        return TXT(tuple(_str(s).encode("latin-1") for s in value))
    if rtype == RType.SRV:
        priority, weight, port, target = _fields(value, 4)
        return SRV(_int(priority), _int(weight), _int(port), _name(target))
    if rtype == RType.CAA:
        flags, tag, text = _fields(value, 3)
        return CAA(_int(flags), _str(tag), _str(text))
    if rtype == RType.SOA:
        mname, rname, *times = _fields(value, 7)
        return SOA(_name(mname), _name(rname), *(_int(t) for t in times))
    raise BadCache(f"unknown record type {rtype}")


def _owner_name(value: Any, origin: Name) -> Name:
    if value.__class__ is str:
        if not value:
            return origin
        labels = value.split(".")
        if "" in labels:
            raise BadCache(f"not a name: {value!r}")
        return (*labels, *origin)
    return _name(value)


def _decode_entry(raw: Any, origin: Name) -> Entry:
    if raw.__class__ is list and len(raw) == 4:
        # The bulk of a big zone, checked inline: one address of a name under the origin.
        owner, rtype, ttl, body = raw
        if (
            owner.__class__ is str
            and owner
            and rtype in _ADDRESS_TYPES
            and rtype.__class__ is int
            and ttl.__class__ is int
            and 0 <= ttl <= 0xFFFFFFFF
            and body.__class__ is list
            and len(body) == 1
            and body[0].__class__ is str
        ):
            labels = owner.split(".")
            if "" not in labels:
                return new_rrset((*labels, *origin), rtype, ttl, (new_address(body[0]),))
    owner, rtype_raw, ttl_raw, body = _fields(raw, 4)
    name, rtype, ttl = _owner_name(owner, origin), _int(rtype_raw), _int(ttl_raw)
    if body.__class__ is list and body and rtype in _ADDRESS_TYPES:
        return RRset(name, rtype, ttl, tuple([Address(_str(r)) for r in body]))  # the bulk of big zones
    if isinstance(body, dict):
        if set(body) != {"pool"} or rtype not in (RType.A, RType.AAAA):
            raise BadCache(f"bad pool record: {body!r}")
        return PoolRRset(name, rtype, ttl, _str(body["pool"]))
    if not isinstance(body, list) or not body:
        raise BadCache(f"no record data: {body!r}")
    return RRset(name, rtype, ttl, tuple(_decode_rdata(rtype, r) for r in body))


def decode(lines: Iterable[str]) -> Zone:
    """Lines written by `encode` -> the zone; BadCache on anything else."""
    return drain(decode_steps(lines, every=0))


def decode_steps(lines: Iterable[str], *, every: int = STEP) -> Generator[None, None, Zone]:
    """`decode` in steps: yields every `every` record sets (well under a millisecond
    of work; 0: once a line), so the daemon can read a big zone between queries;
    returns the zone."""
    it = iter(lines)
    try:
        header = json.loads(next(it))
    except (StopIteration, ValueError) as exc:
        raise BadCache(f"no header: {exc}") from None
    if not isinstance(header, dict) or header.get("magic") != MAGIC or header.get("format") != FORMAT:
        raise BadCache("not a zone cache of this format")
    origin = _name(header.get("origin"))
    count = _int(header.get("entries"))
    digest = hashlib.sha256()
    step = every or 1 << 62
    entries: list[Entry] = []
    soa: RRset | None = None
    chunks = (count + 1 + CHUNK - 1) // CHUNK  # the SOA, then the other record sets
    for i, raw_line in enumerate(it):
        line = raw_line.rstrip("\n")
        if i == chunks:
            trailer = json.loads(line)
            if not isinstance(trailer, dict) or trailer.get("sha256") != digest.hexdigest():
                raise BadCache("checksum mismatch")
            if soa is None or len(entries) != count:
                raise BadCache("record sets missing")
            return (yield from build_zone_steps(origin, soa, entries, every=every))
        digest.update(line.encode())
        try:
            chunk = json.loads(line)
        except ValueError as exc:
            raise BadCache(f"not JSON: {exc}") from None
        if not isinstance(chunk, list) or not chunk or len(chunk) > CHUNK:
            raise BadCache("not a chunk of record sets")
        yield
        for j, raw in enumerate(chunk):
            entry = _decode_entry(raw, origin)
            if soa is None:
                if not isinstance(entry, RRset) or entry.rtype != RType.SOA or entry.name != origin:
                    raise BadCache("the first record set is not the zone's SOA")
                soa = entry
            else:
                entries.append(entry)
            if j % step == step - 1:
                yield
    raise BadCache("truncated")


# --- the files ----------------------------------------------------------------------


def _private(path: Path, *, folder: bool) -> str | None:
    """Why `path` must not be trusted, or None: writable by group or others, or not ours."""
    try:
        st = path.stat()
    except OSError as exc:
        return str(exc)
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        what = "folder" if folder else "file"
        return f"{what} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by this process"
    return None


def open_cached(cache_dir: Path, key: str) -> TextIO | None:
    """The cache file for `key`, open for reading, when it exists and may be trusted."""
    path = cache_dir / f"{key}{SUFFIX}"
    if not path.exists():
        return None
    distrust = _private(cache_dir, folder=True) or _private(path, folder=False)
    if distrust is not None:
        log.warning("not using zone cache %s: %s; reading the YAML instead", path, distrust)
        return None
    try:
        return path.open(encoding="utf-8")
    except OSError as exc:
        log.warning("cannot open zone cache %s: %s; reading the YAML instead", path, exc)
        return None


def load(cache_dir: Path, key: str) -> Zone | None:
    f = open_cached(cache_dir, key)
    if f is None:
        return None
    with f:
        try:
            return decode(f)
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # BadCache is a ValueError
            log.warning("ignoring unreadable zone cache %s: %s; reading the YAML instead", f.name, exc)
            return None


def save(cache_dir: Path, key: str, zone: Zone, keep: set[str]) -> None:
    """Write atomically (0600 in a 0700 folder); drop entries no zone file maps to any more."""
    try:
        cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(cache_dir, 0o700)  # a folder made by an older version may be wider
        tmp = cache_dir / f"{key}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for line in encode(zone):
                f.write(line)
                f.write("\n")
        os.replace(tmp, cache_dir / f"{key}{SUFFIX}")
        for old in cache_dir.glob(f"*{SUFFIX}"):
            if old.stem not in keep and old.stem != key:
                old.unlink(missing_ok=True)
    except (OSError, TypeError) as exc:
        log.debug("cannot write zone cache in %s: %s", cache_dir, exc)
