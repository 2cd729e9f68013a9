"""A new configuration generation in, the previous one out, without holding the
answer loop: zones read from the compiled cache in slices between queries, the
old generation freed in steps (the main process and DNS workers alike)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path
from typing import Any, cast

from geodns.api.render import drive
from geodns.config import Config, zonecache
from geodns.dns.handler import ServingState
from geodns.zone.names import Name
from geodns.zone.zone import Zone

log = logging.getLogger(__name__)

RELOAD_SLICE = 0.0002  # seconds of zone reading per event-loop turn: a query waits at most this
RELEASE_GRACE = 2.0  # seconds before the previous generation is freed, in steps
RELEASE_STEP = 2000  # objects freed per loop turn


def zones_by_key(config: Config) -> dict[str, Zone]:
    """The zones of a running config by zone-cache key: a new generation whose key
    is unchanged takes the very same zone."""
    zones = config.zones.zones
    return {key: zones[origin] for key, origin in config.zone_keys.items() if origin in zones}


async def read_cached_zone(cache_dir: Path, key: str, slice_seconds: float = RELOAD_SLICE) -> Zone | None:
    """A compiled zone read from the cache in steps, yielding to queries between
    them (a larger `slice_seconds` when there are no queries yet to yield to)."""
    f = zonecache.open_cached(cache_dir, key)
    if f is None:
        return None
    # Hundreds of thousands of new objects, none garbage: without the cyclic GC's
    # passes over them (a full one held the loop ~100 ms); reference counting still frees.
    collecting = gc.isenabled()
    gc.disable()
    try:
        with f:
            try:
                return await drive(zonecache.decode_steps(f), slice_seconds)  # queries go in between
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                log.warning("ignoring unreadable zone cache %s: %s", f.name, exc)
                return None
    finally:
        gc.freeze()  # the zone is long-lived: out of the collector's passes before they resume
        if collecting:
            gc.enable()


async def release(state: ServingState, zones: list[Zone]) -> None:
    """Free the previous generation's zones and answer cache in steps: dropping a
    100,000-record zone at once holds the loop ~50 ms. Nothing reads them after
    the swap (a query reads the state once per batch); the grace is for safety."""
    await asyncio.sleep(RELEASE_GRACE)
    for table in (state.cache.udp, state.cache.tcp):
        while table:
            for _ in range(min(RELEASE_STEP, len(table))):
                table.popitem()
            await asyncio.sleep(0)
    for zone in zones:
        nodes = cast(dict[Name, Any], zone.nodes)
        while nodes:
            for _ in range(min(RELEASE_STEP, len(nodes))):
                nodes.popitem()
            await asyncio.sleep(0)
