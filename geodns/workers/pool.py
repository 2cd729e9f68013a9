"""The main process's side of the DNS workers: started, fed, watched, restarted.

Each worker gets the configuration once per generation and then only the
statuses that changed, in the order the monitor published them, so every worker
answers from the same health within a loop turn of the main process. A worker
that exits or goes silent is restarted with backoff while the others keep
answering (the kernel spreads its share of queries over the remaining sockets);
what is wrong shows in /readyz and the log, never silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from geodns.config import Config, zonecache
from geodns.config.model import ListenAddress
from geodns.dns.handler import COUNTERS, Stats
from geodns.dns.server import reserve
from geodns.health.checks.reaper import REAPER, reaped
from geodns.health.health import ProbeKey, Status
from geodns.health.snapshot import HealthSnapshot
from geodns.workers.process import alive, described, spawn, usage
from geodns.workers.protocol import (
    Configure,
    HealthChange,
    ProtocolError,
    Stop,
    read_frame,
    report_from_worker,
    to_worker,
)
from geodns.zone.zone import ZoneSet

log = logging.getLogger(__name__)

SILENT_LIMIT = 5.0  # seconds without a report (they come twice a second) before a worker is killed
START_TIMEOUT = 300.0  # seconds a worker may take to load its zones and listen
RELOAD_TIMEOUT = 300.0  # seconds a reload waits for every worker to serve the new generation
STOP_GRACE = 5.0  # seconds a worker has to finish before SIGKILL
RESTART_MIN, RESTART_MAX = 0.5, 30.0  # restart backoff, seconds
MAX_BACKLOG = 64 * 1024 * 1024  # bytes queued to a worker that does not read: then it is stuck


@dataclass
class Slot:
    """One worker position: its process comes and goes, its counters add up."""

    index: int
    pid: int | None = None
    writer: asyncio.StreamWriter | None = None
    configured: bool = False  # sent a Configure: health changes may follow
    generation: int = 0  # the generation it serves (0: none yet)
    version: int = 0  # the health snapshot version it answers with
    failed: str | None = None  # why it cannot serve the current generation
    last_exit: str | None = None
    figures: dict[str, int] = field(default_factory=dict)  # its last report
    retired: dict[str, int] = field(default_factory=dict)  # counters of its previous processes
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # a report or an exit arrived

    def counter(self, name: str) -> int:
        return self.retired.get(name, 0) + self.figures.get(name, 0)


class WorkerPool:
    def __init__(self, count: int, stats: Stats) -> None:
        self.count = count
        self.stats = stats  # the daemon's counters: the workers' sums, for /metrics
        self.slots = [Slot(i + 1) for i in range(count)]
        self.bound: list[ListenAddress] = []
        self.restarts = 0
        self.generation = 0
        self._config: Config | None = None
        self._snapshot = HealthSnapshot(0)
        self._sent = 0  # the last health version sent to the workers
        self._reserved: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    # Life cycle.
    async def start(
        self, config: Config, snapshot: HealthSnapshot, addresses: tuple[ListenAddress, ...]
    ) -> None:
        """Reserve the ports, start every worker and wait until all answer; a worker
        that cannot start fails the start (with its reason) rather than leave the
        server with fewer workers than configured."""
        try:
            for address in addresses:
                held, bound = reserve(address)
                self._reserved.append(held)
                self.bound.append(bound)
        except BaseException:
            self._close_reserved()
            raise
        self._config, self._snapshot, self.generation = config, snapshot, 1
        _ensure_cached(config)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._supervise(slot), name=f"DNS worker {slot.index}") for slot in self.slots
        ]
        deadline = time.monotonic() + START_TIMEOUT
        for slot in self.slots:
            while slot.generation < 1:
                if slot.last_exit is not None or slot.failed is not None:
                    await self.stop()
                    raise OSError(f"DNS worker {slot.index} could not start: {slot.failed or slot.last_exit}")
                left = deadline - time.monotonic()
                if left <= 0:
                    await self.stop()
                    raise OSError(f"DNS worker {slot.index} did not start within {START_TIMEOUT:.0f}s")
                slot.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(slot.changed.wait(), left)
        for bound in self.bound:
            log.info("DNS listening on %s (UDP and TCP) with %d worker processes", bound, self.count)

    async def stop(self) -> None:
        self._stopping = True
        for slot in self.slots:
            self._send(slot, to_worker(Stop()))
        if self._tasks:
            # Each supervisor returns once its worker has exited and been reaped.
            await asyncio.wait(self._tasks, timeout=STOP_GRACE)
        for slot in self.slots:
            if slot.pid is not None and alive(slot.pid):
                log.warning("DNS worker %d did not stop within %.0fs; killing it", slot.index, STOP_GRACE)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signal.SIGKILL)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._close_reserved()

    def _close_reserved(self) -> None:
        for sock in self._reserved:
            sock.close()
        self._reserved.clear()

    # What the workers are told.
    def publish(self, snapshot: HealthSnapshot) -> None:
        """A new health snapshot: its changed statuses go to every worker now."""
        old, self._snapshot = self._snapshot, snapshot
        changed: dict[ProbeKey, Status] = {
            key: health.status
            for key, health in snapshot.states.items()
            if (before := old.states.get(key)) is None or before.status is not health.status
        }
        if not changed and old.overrides == snapshot.overrides:
            return  # a new reason or time: nothing an answer reads
        frame = to_worker(HealthChange(snapshot.version, changed, snapshot.overrides))
        self._sent = snapshot.version
        for slot in self.slots:
            if slot.configured:
                self._send(slot, frame)

    async def configure(self, config: Config) -> list[str]:
        """A reload: every worker gets the new generation; returns what went wrong
        (empty when every worker serves it)."""
        self._config = config
        self.generation += 1
        frame = self._configure_frame()
        for slot in self.slots:
            if slot.configured:
                slot.failed = None
                self._send(slot, frame)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        waiting = [s for s in self.slots if s.configured]
        while waiting and time.monotonic() < deadline:
            for slot in waiting:
                slot.changed.clear()
            waiting = [
                s for s in waiting if s.generation < self.generation and s.failed is None and s.configured
            ]
            if waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiting[0].changed.wait(), deadline - time.monotonic())
        return self.trouble()

    async def caught_up(self, within: float) -> list[int]:
        """Wait until every running worker answers with the last health sent; the
        workers that did not `within` seconds (an operator's drain is acknowledged
        only once the answers carry it)."""
        deadline = time.monotonic() + within
        while True:
            lagging = [s for s in self.slots if s.generation > 0 and s.version < self._sent]
            left = deadline - time.monotonic()
            if not lagging or left <= 0:
                return [s.index for s in lagging]
            lagging[0].changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lagging[0].changed.wait(), left)

    def _configure_frame(self) -> bytes:
        config = self._config
        assert config is not None
        snapshot = self._snapshot
        self._sent = max(self._sent, snapshot.version)
        return to_worker(
            Configure(
                generation=self.generation,
                config=_without_zones(config),
                cache_dir=config.server.state_dir / "zonecache",
                listen=tuple(self.bound),
                version=snapshot.version,
                states={key: health.status for key, health in snapshot.states.items()},
                overrides=snapshot.overrides,
                workers=self.count,
            )
        )

    def _send(self, slot: Slot, frame: bytes) -> None:
        writer = slot.writer
        if writer is None or writer.is_closing():
            return
        writer.write(frame)
        if writer.transport.get_write_buffer_size() > MAX_BACKLOG and slot.pid is not None:
            log.error(
                "DNS worker %d (pid %d) does not read what it is sent; killing it", slot.index, slot.pid
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.pid, signal.SIGKILL)

    # What is known about them.
    def trouble(self) -> list[str]:
        """Reasons the DNS side is not whole, for /readyz (empty: every worker serves
        the current configuration)."""
        out = []
        for slot in self.slots:
            if slot.failed is not None:
                out.append(
                    f"DNS worker {slot.index} cannot serve configuration generation {self.generation}: "
                    f"{slot.failed} (it serves generation {slot.generation})"
                )
            elif slot.pid is None or slot.generation == 0:
                why = f" after it {slot.last_exit}" if slot.last_exit else ""
                out.append(f"DNS worker {slot.index} is starting{why}")
        return out

    def ready_workers(self) -> int:
        return sum(1 for s in self.slots if s.pid is not None and s.generation > 0)

    def figures(self) -> dict[str, Any]:
        return {
            "workers": self.count,
            "ready": self.ready_workers(),
            "restarts": self.restarts,
            "queries": {slot.index: slot.counter("queries") for slot in self.slots},
            "usage": {s.index: found for s in self.slots if s.pid is not None and (found := usage(s.pid))},
            "cache_entries": sum(s.figures.get("cache_entries", 0) for s in self.slots),
            "cache_bytes": sum(s.figures.get("cache_bytes", 0) for s in self.slots),
        }

    def _sum_counters(self) -> None:
        for name in COUNTERS:
            setattr(self.stats, name, sum(slot.counter(name) for slot in self.slots))
        self.stats.answers = self._keyed("answers:")
        self.stats.geo = self._keyed("geo:")

    def _keyed(self, prefix: str) -> dict[int, int]:
        """Counters reported as PREFIX<key>, summed over workers (past processes too)."""
        out: dict[int, int] = {}
        for slot in self.slots:
            for name in {*slot.retired, *slot.figures}:
                if name.startswith(prefix):
                    key = int(name[len(prefix) :])
                    out[key] = out.get(key, 0) + slot.counter(name)
        return out

    # One slot's processes, one after the other.
    async def _supervise(self, slot: Slot) -> None:
        backoff = RESTART_MIN
        while not self._stopping:
            began = time.monotonic()
            try:
                await self._run_once(slot)
            except asyncio.CancelledError:
                if slot.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(slot.pid, signal.SIGKILL)
                raise
            except Exception:
                log.exception("DNS worker %d: supervision failed", slot.index)
            if self._stopping:
                return
            self.restarts += 1
            if time.monotonic() - began > 60.0:
                backoff = RESTART_MIN  # it ran a good while: this is a new problem, restart soon
            log.error("DNS worker %d %s; starting a new one in %.1fs", slot.index, slot.last_exit, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_MAX)

    async def _run_once(self, slot: Slot) -> None:
        pid, ours = spawn(slot.index)
        REAPER.children.add(pid)
        slot.pid, slot.generation, slot.failed, slot.figures, slot.version = pid, 0, None, {}, 0
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        slot.writer = writer
        ended: str | None = "was cancelled"
        try:
            self._send(slot, self._configure_frame())
            slot.configured = True
            ended = await self._listen(slot, reader)
        finally:
            slot.configured = False
            slot.writer = None
            writer.close()
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            code = await reaped(pid)
            REAPER.children.discard(pid)
            for name in {*COUNTERS, *slot.figures}:
                slot.retired[name] = slot.counter(name)
            slot.figures = {}
            slot.pid, slot.generation = None, 0
            if ended is None and code == 0 and self._stopping:
                slot.last_exit = None
            else:
                slot.last_exit = f"(pid {pid}) {described(code)}" + (f": it {ended}" if ended else "")
            slot.changed.set()

    async def _listen(self, slot: Slot, reader: asyncio.StreamReader) -> str | None:
        """Reports until the worker's end; what ended it, or None for a clean end."""
        while True:
            try:
                body = await asyncio.wait_for(read_frame(reader), SILENT_LIMIT)
            except TimeoutError:
                return f"sent nothing for {SILENT_LIMIT:.0f}s (stuck)"
            except ProtocolError as exc:
                return f"broke the control protocol ({exc})"
            if body is None:
                return None
            try:
                report = report_from_worker(body)
            except ProtocolError as exc:
                return f"broke the control protocol ({exc})"
            self._on_report(slot, report)

    def _on_report(self, slot: Slot, report: dict[str, Any]) -> None:
        stats = report.get("stats")
        if isinstance(stats, dict):
            slot.figures = {k: v for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool)}
            self._sum_counters()
        version = report.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            slot.version = version
        ready = report.get("ready")
        if isinstance(ready, int) and not isinstance(ready, bool):
            slot.generation = ready
            if ready == self.generation:
                slot.failed = None
            log.debug("DNS worker %d (pid %s) serves generation %d", slot.index, slot.pid, ready)
        failed = report.get("failed")
        if isinstance(failed, int) and failed == self.generation:
            slot.failed = str(report.get("reason", "no reason given"))
            log.error(
                "DNS worker %d cannot serve configuration generation %d: %s", slot.index, failed, slot.failed
            )
        slot.changed.set()


def _ensure_cached(config: Config) -> None:
    """Every zone in the compiled cache the workers read (a config loaded without
    the cache, as the demo and tests do, has not written it)."""
    cache_dir = config.server.state_dir / "zonecache"
    keys = set(config.zone_keys)
    for key, origin in config.zone_keys.items():
        if not (cache_dir / f"{key}{zonecache.SUFFIX}").exists() and origin in config.zones.zones:
            zonecache.save(cache_dir, key, config.zones.zones[origin], keys)


def _without_zones(config: Config) -> Config:
    return dataclasses.replace(config, zones=ZoneSet({}))
