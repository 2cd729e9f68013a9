"""One DNS worker process (`python -m geodns.workers.child INDEX LEVEL`, started
by the main process with its control socket as fd 3).

It binds its own SO_REUSEPORT sockets once it can answer (so no query waits in
the queue of a worker still starting), answers from the configuration and the
health the main process sends, and reports its counters twice a second, which
doubles as a heartbeat. It exits when told to, on SIGTERM, or when the main
process goes away (its control socket ends; PR_SET_PDEATHSIG as a backstop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import signal
import socket
import sys
from types import MappingProxyType
from typing import Any

from geodns.config import Config, load
from geodns.dns.handler import COUNTERS, ServingState, Stats
from geodns.dns.server import DnsServer
from geodns.eventloop import uvloop_run
from geodns.health.health import Health, ProbeKey, Status, probe_keys
from geodns.health.overrides import Override
from geodns.health.snapshot import HealthSnapshot
from geodns.reloading import RELOAD_SLICE, read_cached_zone, release, zones_by_key
from geodns.serving import next_state, serving_state
from geodns.workers.protocol import (
    Configure,
    HealthChange,
    ProtocolError,
    Stop,
    message_from_main,
    read_frame,
    to_main,
)
from geodns.zone.names import Name
from geodns.zone.zone import Zone, ZoneSet

log = logging.getLogger("geodns.workers.child")  # by name: run as __main__

CONTROL_FD = 3
REPORT_EVERY = 0.5  # seconds between counter reports (the main process's heartbeat)
START_SLICE = 0.05  # zone reading per loop turn before the listeners exist: nothing to yield to
_PR_SET_PDEATHSIG = 1
_HEALTH = {status: Health(status=status) for status in Status}  # answers read only the status


class ConfigureFailed(Exception):
    """A configuration generation this worker cannot serve (the reason says why)."""


class Child:
    def __init__(self, index: int, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.writer = writer
        self.stats = Stats()
        self.config: Config | None = None
        self.state: ServingState | None = None
        self.generation = 0
        self.states: dict[ProbeKey, Health] = {}
        self.overrides: tuple[Override, ...] = ()
        self.version = 0
        self.dns: DnsServer | None = None
        self.stopping = asyncio.Event()
        self._configuring: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def current(self) -> ServingState:
        assert self.state is not None  # listeners start only after the first state exists
        return self.state

    def report(self, report: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(to_main(report))

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(self.version, MappingProxyType(dict(self.states)), self.overrides)

    def on_health(self, message: HealthChange) -> None:
        for key, status in message.changed.items():
            self.states[key] = _HEALTH[status]
        self.version, self.overrides = message.version, message.overrides
        if self.config is not None and self.state is not None:
            self.state = next_state(self.config, self.state, self.snapshot())
        self.report({"version": message.version})  # the main process waits on this after a drain

    def on_configure(self, message: Configure) -> None:
        # The health in the message is the main process's truth from now on; keys it
        # no longer has stay until the new generation serves (the old one may read them).
        self.states.update((key, _HEALTH[status]) for key, status in message.states.items())
        self.version, self.overrides = message.version, message.overrides
        if self.config is not None and self.state is not None:
            self.state = next_state(self.config, self.state, self.snapshot())
            self.report({"version": message.version})
        if self._configuring is not None:
            self._configuring.cancel()  # a newer generation supersedes it
        self._configuring = asyncio.get_running_loop().create_task(self._configure(message))

    async def _configure(self, message: Configure) -> None:
        try:
            config = await self._with_zones(message)
        except ConfigureFailed as exc:
            log.error("cannot serve configuration generation %d: %s", message.generation, exc)
            self.report({"failed": message.generation, "reason": str(exc)})
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("cannot serve configuration generation %d", message.generation)
            self.report({"failed": message.generation, "reason": f"internal error: {exc!r}"})
            return
        wanted = set(probe_keys(config))
        for key in [k for k in self.states if k not in wanted]:
            del self.states[key]
        old_state = self.state
        old_zones = self.config.zones.zones if self.config is not None else {}
        self.config = config
        self.state = serving_state(config, self.snapshot())
        if self.dns is None:
            server = config.server
            self.dns = DnsServer(
                self.current,
                self.stats,
                tcp_idle_timeout=server.tcp_idle_timeout,
                tcp_max_connections=server.tcp_max_connections,
                tcp_message_timeout=server.tcp_message_timeout,
                tcp_max_lifetime=server.tcp_max_lifetime,
                tcp_max_queued=server.tcp_max_queued,
                reuseport=True,
                share=message.workers,
            )
            try:
                await self.dns.start(message.listen)
            except OSError as exc:
                self.report({"failed": message.generation, "reason": f"cannot listen: {exc}"})
                self.stopping.set()
                return
        self.dns.rate_limit(config.server.rate_limit)
        if old_state is not None:
            kept = {id(zone) for zone in config.zones.zones.values()}
            task = asyncio.get_running_loop().create_task(
                release(old_state, [z for z in old_zones.values() if id(z) not in kept])
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        gc.freeze()
        self.generation = message.generation
        self.report({"ready": message.generation, "pid": os.getpid(), "version": self.version})

    async def _with_zones(self, message: Configure) -> Config:
        """The message's configuration with its zones: unchanged ones kept, the rest
        read from the compiled zone cache; if any cannot be read, the whole
        configuration is loaded from its files (as a worker started alone would)."""
        running = zones_by_key(self.config) if self.config is not None else {}
        slice_seconds = START_SLICE if self.dns is None else RELOAD_SLICE
        found: dict[Name, Zone] = {}
        for key, origin in message.config.zone_keys.items():
            zone = running.get(key)
            if zone is None:
                zone = await read_cached_zone(message.cache_dir, key, slice_seconds)
            if zone is None:
                return await self._load_whole(message, running)
            found[origin] = zone
        return dataclasses.replace(message.config, zones=ZoneSet(found))

    async def _load_whole(self, message: Configure, running: dict[str, Zone]) -> Config:
        path = message.config.source
        log.warning("a compiled zone is missing from %s; reading %s", message.cache_dir, path)
        try:
            config = await asyncio.to_thread(load, path, use_cache=True, reuse=running)
        except Exception as exc:  # ConfigError included: the files changed since the main process read them
            raise ConfigureFailed(f"reading {path}: {exc}") from exc
        if config.zone_keys != message.config.zone_keys:
            raise ConfigureFailed(f"the zone files under {path.parent} changed since they were validated")
        return dataclasses.replace(message.config, zones=config.zones)

    async def report_every(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY)
            cache = self.state.cache if self.state is not None else None
            self.report(
                {
                    "stats": {
                        **{name: getattr(self.stats, name) for name in COUNTERS},
                        **{f"answers:{key}": n for key, n in self.stats.answers.items()},
                        **{f"geo:{key}": n for key, n in self.stats.geo.items()},
                        "cache_entries": cache.entries() if cache else 0,
                        "cache_bytes": cache.used if cache else 0,
                    },
                    "generation": self.generation,
                }
            )

    async def run(self, reader: asyncio.StreamReader) -> None:
        reporter = asyncio.get_running_loop().create_task(self.report_every())
        reading = asyncio.get_running_loop().create_task(self._read(reader))
        stop = asyncio.get_running_loop().create_task(self.stopping.wait())
        try:
            await asyncio.wait({reading, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reporter, reading, stop, self._configuring, *self._background):
                if task is not None:
                    task.cancel()
            if self.dns is not None:
                await self.dns.stop()
            with contextlib.suppress(Exception):
                self.writer.close()
        if reading.done() and not reading.cancelled() and reading.exception() is not None:
            raise reading.exception()  # type: ignore[misc]

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while (body := await read_frame(reader)) is not None:
            message = message_from_main(body)
            if isinstance(message, Configure):
                self.on_configure(message)
            elif isinstance(message, HealthChange):
                self.on_health(message)
            elif isinstance(message, Stop):
                log.debug("told to stop")
                return
        log.info("the main process went away; stopping")


async def _main(index: int) -> None:
    sock = socket.socket(fileno=CONTROL_FD)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    child = Child(index, writer)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, child.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: None)  # reloads come from the main process
    await child.run(reader)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def main(argv: list[str]) -> int:
    index, level = int(argv[0]), int(argv[1])
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s %(name)s [worker {index}]: %(message)s",
        stream=sys.stderr,
    )
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        uvloop_run(_main(index))
    except ProtocolError as exc:
        log.error("control channel broken: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
