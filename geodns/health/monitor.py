"""The probe scheduler: one probe per unique (check, target), spread over the
interval, bounded in concurrency, every result through `health.step`, and a
new snapshot published whenever a status changes.

Nothing a probe does can stop the monitor: any exception becomes a failed
result carrying its reason, and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from geodns.config.model import Check, Config, Member, Pool
from geodns.health import statefile
from geodns.health.capacity import ProbeBudget, probe_load
from geodns.health.checks import Probe, ProbeResult, Target, make_probe
from geodns.health.checks.base import checker_error, failed
from geodns.health.checks.reaper import REAPER
from geodns.health.health import Health, ProbeKey, Status, describe, probe_keys, restore, step
from geodns.health.history import Event, History
from geodns.health.loopwatch import LoopWatch
from geodns.health.overrides import describe_override, forced
from geodns.health.probing import run_probe
from geodns.health.snapshot import SnapshotStore

log = logging.getLogger(__name__)

STATE_FILE = "health.json"
STALL_SHARE = 0.25  # a timeout is ours when the loop was late this share of the timeout meanwhile
TROUBLE_WINDOW = 30.0  # seconds a checker error keeps /readyz at 503


class MonitorMetrics(Protocol):
    """The metrics the monitor feeds (api.metrics.Metrics is one); injected so that
    health never imports the API layer."""

    member_up: Gauge
    probes: Counter
    probes_late: Counter
    probe_duration: Histogram
    probe_failures: Counter
    checker_errors: Counter
    state_changes: Counter
    snapshot_version: Gauge
    ready: Gauge


@dataclass
class _Target:
    key: ProbeKey
    check: Check
    members: list[tuple[Pool, Member]]
    task: asyncio.Task[None] | None = None


class Monitor:
    def __init__(
        self,
        config: Config,
        store: SnapshotStore,
        metrics: MonitorMetrics,
        *,
        wall: Callable[[], float] = time.time,
        persist: bool = True,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.wall = wall
        self.config = config
        self.states: dict[ProbeKey, Health] = {}
        state_path = config.server.state_dir / STATE_FILE
        self.saver = statefile.Saver(state_path, self.states) if persist else None
        self.targets: dict[ProbeKey, _Target] = {}
        self.probes: dict[str, Probe] = {}
        self._sem = asyncio.Semaphore(config.server.max_concurrent_probes)
        self._budget = ProbeBudget(config.server.max_probe_rate)
        self._overload = 1.0  # probes wanted per probe the budget allows (>= 1)
        self._running = False
        self._publish_scheduled = False
        self._check_metrics: dict[str, tuple[Any, Any]] = {}
        self._pending: set[ProbeKey] = set()  # targets without a fresh result: not ready
        self.watch = LoopWatch()
        self._sweeps: asyncio.Task[None] | None = None
        self.trouble: dict[str, tuple[float, str]] = {}  # checker error class -> (loop time, reason)
        self._trouble_logged: dict[str, float] = {}
        self.all_known = asyncio.Event()  # every target has a status (probed or restored)
        # Where this instance's own view goes: None publishes it as the answers' health;
        # with peers, the cluster's vote takes it (and publishes what it decides).
        self.sink: Callable[[Mapping[ProbeKey, Health]], None] | None = None
        self.history = History()  # recent results and changes, for the status page
        saved = statefile.load(state_path) if persist else {}
        self._plan(config, saved)

    def _plan(self, config: Config, saved: dict[ProbeKey, Health]) -> None:
        keys = probe_keys(config)
        self._overload = max(1.0, probe_load(config).rate / config.server.max_probe_rate)
        self.targets = {key: _Target(key, config.checks[key.check], members) for key, members in keys.items()}
        for key in keys:
            if key not in self.states:
                self.states[key] = restore(saved[key]) if key in saved else Health()
                if key in saved:
                    log.info(
                        "%s: last known state %s (since %s) until a fresh probe",
                        self._label(key),
                        saved[key].status,
                        _fmt_time(saved[key].since),
                    )
        for key in list(self.states):
            if key not in keys:
                del self.states[key]
        self._pending = {k for k, h in self.states.items() if not h.fresh}

    @staticmethod
    def _label(key: ProbeKey) -> str:
        port = f":{key.port}" if key.port is not None else ""
        return f"probe {key.check} {key.address}{port}"

    def ready(self) -> bool:
        return not self._pending

    def known(self) -> bool:
        """Every target has a status to act on: probed, or restored from disk."""
        return all(h.status is not Status.UNKNOWN for h in self.states.values())

    def pending(self) -> list[ProbeKey]:
        return sorted(self._pending, key=lambda k: (k.check, k.address, k.port or 0))

    def checker_trouble(self) -> list[str]:
        """Recent errors of the checker itself (ours, not the targets'): while there
        are some, states may be stale and the instance says it is not ready."""
        now = asyncio.get_running_loop().time()
        return [
            f"checker: {reason} ({now - when:.0f}s ago)"
            for when, reason in self.trouble.values()
            if now - when < TROUBLE_WINDOW
        ]

    async def start(self) -> None:
        self._running = True
        self.watch.start()
        if os.getpid() == 1 or any(c.type == "exec" for c in self.config.checks.values()):
            # Exec checks' orphans come to us, and PID 1 must reap whatever the kernel hands it.
            REAPER.enable_subreaper()
            self._sweeps = asyncio.get_running_loop().create_task(REAPER.sweep_every(1.0), name="reaper")
        if self.known():
            self.all_known.set()
        self._emit()
        self._update_gauges()
        self._start_tasks()

    def _start_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        count = max(1, len(self.targets))
        for index, target in enumerate(self.targets.values()):
            if target.task is None:
                phase = target.check.interval * index / count
                target.task = loop.create_task(self._run(target, phase), name=f"probe {target.key}")

    def _probe_for(self, check: Check) -> Probe:
        probe = self.probes.get(check.name)
        if probe is None:
            probe = self.probes[check.name] = make_probe(check)
        return probe

    async def _run(self, target: _Target, phase: float) -> None:
        """Probe now (so start-up is not blind for a whole interval), then on a fixed
        grid offset by `phase`, with jitter; a late probe skips ahead, never piles up."""
        loop = asyncio.get_running_loop()
        check = target.check
        start = loop.time()
        slot = 0
        due = start
        while self._running:
            late = loop.time() - due
            if late > check.interval * 0.1:
                self.metrics.probes_late.labels(check.name).inc()
            ran = True
            try:
                ran = await self._probe_once(target, first=slot == 0)
            except Exception as exc:
                # A bug of ours must neither kill this target's loop (its state would
                # freeze and lie) nor pass silently: the target fails, loudly.
                log.exception("monitor error probing %s", self._label(target.key))
                self.record(target.key, failed("error", f"monitor error: {type(exc).__name__}: {exc}"))
            slot += 1
            if not ran:
                # Skipped for the budget: come back after about as many slots as the budget
                # is short, so that skipping does not itself cost a wake-up per slot.
                slot += random.randrange(max(1, round(self._overload)))
            due = start + phase + slot * check.interval + random.uniform(0, check.effective_jitter)
            now = loop.time()
            if due < now:  # overran: skip the missed slots
                missed = int((now - due) // check.interval) + 1
                slot += missed
                due += missed * check.interval
            await asyncio.sleep(due - now)

    async def _probe_once(self, target: _Target, *, first: bool = False) -> bool:
        """Probe `target` once; False when the probe was skipped (over budget, or too late)."""
        check = target.check
        probe = self._probe_for(check)
        loop = asyncio.get_running_loop()
        queued = loop.time()
        if not first and not self._budget.take(queued):
            # Probes share a core with DNS answers: beyond the budget they are skipped
            # (counted late, states held), so answers keep their latency. Every
            # target's first probe goes: start-up needs a state for each.
            self.metrics.probes_late.labels(check.name).inc()
            rate = self._budget.rate
            self._checker_error(
                target,
                checker_error("overload", f"more than server.max_probe_rate ({rate:g}/s) probes wanted"),
            )
            return False
        async with self._sem:
            started = loop.time()
            if started - queued > check.interval:
                # More probes wanted than this host runs: skip, count late, hold the state.
                self.metrics.probes_late.labels(check.name).inc()
                self._checker_error(
                    target,
                    checker_error(
                        "overload",
                        f"probes wait {started - queued:.1f}s for a slot: more than this host runs",
                    ),
                )
                return False
            t0 = time.perf_counter()
            result = await run_probe(probe, Target(target.key.address, target.key.port), check.timeout)
            latency = time.perf_counter() - t0
        if not result.ok and not result.ours and result.kind == "timeout":
            stall = self.watch.stalled(started, loop.time())
            if stall > check.timeout * STALL_SHARE:
                result = checker_error(
                    "loop-stall",
                    f"{result.reason}, but geodns itself stalled {stall * 1000:.0f} ms meanwhile"
                    " (its event loop was busy): not held against the target",
                )
        if result.ours:
            self._checker_error(target, result)
            return True
        counter, histogram = self._per_check_metrics(check.name)
        counter.inc()
        histogram.observe(latency)
        if not result.ok:
            self.metrics.probe_failures.labels(check.name, result.kind).inc()
            log.debug("%s failed: %s", self._label(target.key), result.reason)
        self.record(target.key, result, latency)
        return True

    def _checker_error(self, target: _Target, result: ProbeResult) -> None:
        """A probe that measured us, not the target: the target's state is held (and
        marked so: a cluster node gives no vote from a state it cannot see), the error
        counted and said (once every 10 s per cause, not per probe)."""
        health = self.states.get(target.key)
        if health is not None and not health.held:
            self.states[target.key] = replace(health, held=True)
        now = asyncio.get_running_loop().time()
        self.metrics.checker_errors.labels(target.check.name, result.kind).inc()
        self.trouble[result.kind] = (now, result.reason)
        if now - self._trouble_logged.get(result.kind, -1e9) >= 10.0:
            self._trouble_logged[result.kind] = now
            log.error("checker error, member states held: %s", result.reason)

    def _per_check_metrics(self, name: str) -> tuple[Any, Any]:
        """The labelled probe counter and histogram of a check, looked up once:
        prometheus' labels() costs a few microseconds on every probe otherwise."""
        found = self._check_metrics.get(name)
        if found is None:
            found = self._check_metrics[name] = (
                self.metrics.probes.labels(name),
                self.metrics.probe_duration.labels(name),
            )
        return found

    def record(self, key: ProbeKey, result: ProbeResult, latency: float | None = None) -> None:
        """Fold one probe result into the state; publish and log when the status changes."""
        old = self.states.get(key)
        target = self.targets.get(key)
        if old is None or target is None:
            return  # the target went away in a reload while its probe ran
        new = step(
            old,
            result.ok,
            result.reason,
            self.wall(),
            rise=target.check.rise,
            fall=target.check.fall,
            latency=latency,
        )
        self.states[key] = new
        self.history.probe(key, new.checked or self.wall(), result.ok, latency)
        if self._pending and key in self._pending:
            self._pending.discard(key)
            if not self._pending:
                log.info("every member has a fresh probe result: ready")
                self.metrics.ready.set(1)
        if old.status is Status.UNKNOWN and not self.all_known.is_set() and self.known():
            self.all_known.set()
        if new.status is not old.status:
            overrides = self.store.current().overrides
            for pool, member in target.members:
                override = forced(overrides, pool, member) if overrides else None
                note = f" (answers unchanged: {describe_override(override)})" if override else ""
                log.warning(
                    "member %s (%s, pool %s): %s%s",
                    member.address,
                    member.dc,
                    pool.name,
                    describe(old, new),
                    note,
                    extra={
                        "event": "state_change",
                        "member": member.address,
                        "pool": pool.name,
                        "dc": member.dc,
                        "old": str(old.status),
                        "new": str(new.status),
                        "reason": new.reason if new.status is not Status.UP else "",
                        "forced": False,
                    },
                )
                self.metrics.state_changes.labels(pool.name, member.address, str(new.status)).inc()
                self.history.add(
                    Event(
                        new.since or self.wall(),
                        f"member {member.address}",
                        str(old.status),
                        str(new.status),
                        describe(old, new)[len(f"{old.status} -> {new.status}") :].lstrip(" :"),
                        pool=pool.name,
                        dc=member.dc,
                    )
                )
            self._set_member_gauges(target)
            self._schedule_publish()

    def _schedule_publish(self) -> None:
        """Publish once per event-loop turn however many states changed in it:
        at start-up thousands of targets change at once, and copying the state
        table once per change would cost O(n^2). Queries still see a change at
        once: the publish runs before the loop reads another datagram."""
        if not self._publish_scheduled:
            self._publish_scheduled = True
            asyncio.get_running_loop().call_soon(self._publish)

    def _publish(self) -> None:
        self._publish_scheduled = False
        self._emit()
        self.metrics.snapshot_version.set(self.store.current().version)
        if self.saver is not None:
            self.saver.soon()

    def _emit(self) -> None:
        """This instance's own view, to the answers (alone) or to the cluster's vote."""
        if self.sink is not None:
            self.sink(self.states)
        else:
            self.store.publish(self.states)

    def _set_member_gauges(self, target: _Target) -> None:
        up = 1 if self.states[target.key].status is Status.UP else 0
        for pool, member in target.members:
            self.metrics.member_up.labels(pool.name, member.address, member.dc).set(up)

    def _update_gauges(self) -> None:
        self.metrics.snapshot_version.set(self.store.current().version)
        self.metrics.ready.set(1 if self.ready() else 0)
        for target in self.targets.values():
            self._set_member_gauges(target)

    async def update(self, config: Config) -> None:
        """Apply a reloaded config: keep the state of unchanged probes, start new ones, stop old ones."""
        old_targets = self.targets
        old_checks = self.config.checks
        self.config = config
        self._plan(config, {})
        self.history.forget(set(self.targets))
        for key, target in old_targets.items():
            new = self.targets.get(key)
            if new is not None and old_checks.get(key.check) == config.checks.get(key.check):
                new.task = target.task  # same probe, same schedule
            elif target.task is not None:
                target.task.cancel()
        for name, probe in list(self.probes.items()):
            if old_checks.get(name) != config.checks.get(name):
                del self.probes[name]
                await probe.close()
        # Every target that is still probed keeps its state, even when its check's
        # settings changed (a new timeout is not a new target): resetting to unknown
        # during an outage sent answers to the dead site until the first new probe.
        # The new check's results move it with the usual rise/fall.
        self.metrics.member_up.clear()
        self._emit()
        self._update_gauges()
        if self._running:
            self._start_tasks()

    async def stop(self) -> None:
        self._running = False
        if self.saver is not None:
            await self.saver.flush()  # the latest states, before exiting
        await self.watch.stop()
        if self._sweeps is not None:
            self._sweeps.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeps
            self._sweeps = None
        tasks = [t.task for t in self.targets.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for probe in self.probes.values():
            with contextlib.suppress(Exception):
                await probe.close()
        self.probes.clear()


def _fmt_time(when: float | None) -> str:
    if when is None:
        return "unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
