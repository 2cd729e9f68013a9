"""The zone files of `zones_dir` -> zones: each taken, in this order, from a running
generation with the same input, from the compiled zone cache, from a child
compiler (big files), or read and checked here (and then cached)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geodns.config import zonecache
from geodns.config.fields import Ctx
from geodns.config.model import Pool
from geodns.config.recordlines import load_zone_text
from geodns.config.yamlload import MAX_ZONE_BYTES, YMap, decode, load_file, too_big
from geodns.config.zonefile import parse_zone
from geodns.errors import Location
from geodns.zone.names import Name, to_text
from geodns.zone.zone import Zone, ZoneSet

# A zone file this big (~300,000 records) that is not in the cache is compiled by
# another process when the caller offers one: read here, a million records left
# ~800 MB of parse garbage in the daemon for good (freed, but not given back).
BIG_ZONE = 16 * 1024 * 1024
Compiler = Callable[[], bool]


@dataclass
class Sources:
    """Where a zone may come from besides its file, and the keys reading records."""

    pools: dict[str, Pool]  # what `pool:` records may name (part of a zone's cache key)
    cache_dir: Path | None  # the zone cache; None: neither read nor written
    reuse: Mapping[str, Zone]  # a running generation's zones by cache key
    compiler: Compiler | None = None  # fills the cache for a big zone in another process
    keys: dict[str, Name] = field(default_factory=dict)  # filled: cache key -> origin of each zone read


def zone_file(ctx: Ctx, path: Path, sources: Sources) -> Zone | None:
    pools, cache_dir, keys, compiler = sources.pools, sources.cache_dir, sources.keys, sources.compiler
    try:
        info = path.stat()
        if info.st_size > MAX_ZONE_BYTES:
            ctx.error(Location(str(path), 1, 1), too_big(info.st_size, MAX_ZONE_BYTES))
            return None
        data = path.read_bytes()
        mtime = int(info.st_mtime)
    except OSError as exc:
        ctx.error(Location(str(path), 1, 1), f"cannot read file: {exc}")
        return None
    key = zonecache.cache_key(data, mtime, pools)
    if (known := sources.reuse.get(key)) is not None:
        keys[key] = known.origin
        return known  # the same input as a zone already built: the same zone
    if cache_dir is not None and (cached := zonecache.load(cache_dir, key)) is not None:
        keys[key] = cached.origin
        return cached
    if (
        cache_dir is not None
        and compiler is not None
        and info.st_size >= BIG_ZONE
        and compiler()  # compiled by a process of its own: its parse garbage never was this one's
        and (cached := zonecache.load(cache_dir, key)) is not None
    ):
        keys[key] = cached.origin
        return cached
    before = len(ctx.issues)
    text = decode(str(path), data, ctx.issues)
    if text is None:
        return None
    doc = load_zone_text(text, str(path), ctx.issues)
    if doc is None:
        if len(ctx.issues) == before:
            ctx.error(Location(str(path), 1, 1), "zone file is empty")
        return None
    zone = parse_zone(ctx, doc, str(path), pools, default_serial=mtime)
    if zone is not None and len(ctx.issues) == before:
        keys[key] = zone.origin
        if cache_dir is not None:
            zonecache.save(cache_dir, key, zone, set(keys))
    return zone


def _origin_loc(path: Path) -> Location:
    """Where a zone file says `origin:` (it may have come from the compiled cache)."""
    doc = load_file(path, [])
    return doc.value_loc("origin") if isinstance(doc, YMap) else Location(str(path), 1, 1)


def read_zones(ctx: Ctx, zones_dir: Path, where: Location, sources: Sources) -> ZoneSet:
    if not zones_dir.is_dir():
        ctx.error(where, f"zones_dir: {str(zones_dir)!r} is not a directory")
        return ZoneSet({})
    zones: dict[Name, Zone] = {}
    files: dict[Name, str] = {}
    for path in sorted([*zones_dir.glob("*.yaml"), *zones_dir.glob("*.yml")]):
        zone = zone_file(ctx, path, sources)
        if zone is None:
            continue
        if zone.origin in files:
            ctx.error(
                _origin_loc(path),
                f"zone {to_text(zone.origin)} is already defined in {files[zone.origin]}"
                " (two files for one zone: merge them, or fix this file's origin)",
            )
            continue
        files[zone.origin] = str(path)
        zones[zone.origin] = zone
    return ZoneSet(zones)
