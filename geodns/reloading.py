"""A new configuration generation in, the previous one out, without holding the
answer loop: zones read from the compiled cache in slices between queries, the
old generation freed in steps (the main process and DNS workers alike)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from geodns.api.render import drive
from geodns.api.tokens import load_api_token, load_cluster_token, load_read_token
from geodns.config import Config, load, zonecache
from geodns.config.compile import command as compile_command
from geodns.config.model import ListenAddress
from geodns.dns.handler import ServingState
from geodns.errors import ConfigError, GeoDnsError
from geodns.health.checks.reaper import run_command
from geodns.startup import with_overrides
from geodns.zone.names import Name
from geodns.zone.zone import Zone

log = logging.getLogger(__name__)

RELOAD_SLICE = 0.0002  # seconds of zone reading per event-loop turn: a query waits at most this
RELEASE_GRACE = 2.0  # seconds before the previous generation is freed, in steps
RELEASE_STEP = 2000  # objects freed per loop turn
COMPILER_OUTPUT = 4 * 1024 * 1024  # what a reload's zone compiler may say: every problem of a big config


def zones_by_key(config: Config) -> dict[str, Zone]:
    """The zones of a running config by zone-cache key: a new generation whose key
    is unchanged takes the very same zone."""
    zones = config.zones.zones
    return {key: zones[origin] for key, origin in config.zone_keys.items() if origin in zones}


async def compiled_zones(config: Config, path: Path) -> dict[str, Zone] | None:
    """Zones by cache key for the config at `path`: the running ones whose input
    is unchanged, the rest compiled by a child process and read from the cache.
    None when the config has problems (logged)."""
    running = zones_by_key(config)
    argv = compile_command(path)
    try:
        # Niced: on a busy host the compiler takes what the answers leave.
        run = await run_command(argv, dict(os.environ), keep=COMPILER_OUTPUT, limit=COMPILER_OUTPUT, nice=10)
    except OSError as exc:
        log.warning("cannot start the zone compiler (%s); compiling in this process", exc)
        return running
    lines = bytes(run.tail).decode("utf-8", "replace").strip().splitlines()
    try:
        said = json.loads(lines[-1]) if lines else None
    except ValueError:
        said = None
    for line in lines[:-1]:
        log.info("zone compiler: %s", line)
    if not isinstance(said, dict):
        log.warning("zone compiler exited %s without a result; compiling in this process", run.code)
        return running
    if "issues" in said:
        issues = [str(i) for i in said["issues"]]
        log.error(
            "reload failed, still serving the previous configuration; %d problem(s):\n%s",
            len(issues),
            "\n".join(issues),
        )
        return None
    cache_dir = Path(str(said.get("state_dir", "."))) / "zonecache"
    for key in said.get("zone_keys", {}):
        if key not in running and (zone := await read_cached_zone(cache_dir, str(key))) is not None:
            running[key] = zone
    return running


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


@dataclass(frozen=True)
class Reread:
    """A reload's new config, with this run's command-line overrides, and its tokens."""

    config: Config
    api_token: str | None
    read_token: str | None
    cluster_token: str | None


async def reread_config(
    config: Config, dns_listen: list[ListenAddress] | None, http_listen: ListenAddress | None
) -> Reread | None:
    """The config at `config.source` again; None, with every problem logged, when
    anything in it is wrong (the caller keeps serving `config`). Zones whose input is
    unchanged are the running ones; the rest are compiled in a child process."""
    path = config.source
    reuse = await compiled_zones(config, path)
    if reuse is None:
        return None
    try:
        # Every zone is in `reuse` unless a file changed again meanwhile: then the
        # YAML is read here, in a thread, as a fallback.
        new = await asyncio.to_thread(load, path, use_cache=True, reuse=reuse)
    except ConfigError as exc:
        log.error(
            "reload failed, still serving the previous configuration; %d problem(s):\n%s",
            len(exc.issues),
            exc,
        )
        return None
    new = with_overrides(new, dns_listen, http_listen)
    try:
        return Reread(new, load_api_token(new), load_read_token(new), load_cluster_token(new))
    except GeoDnsError as exc:
        log.error("reload failed, still serving the previous configuration: %s", exc)
        return None


def restart_needed(old: Config, new: Config) -> list[str]:
    """What a reload from `old` to `new` cannot apply while running."""
    path = new.source
    said = []
    if old.server.dns_listen != new.server.dns_listen or old.server.http_listen != new.server.http_listen:
        said.append(f"listen addresses changed in {path}; restart geodns to apply them")
    if old.server.workers != new.server.workers:
        said.append(f"server.workers changed in {path}; restart geodns to apply it")
    return said
