"""The reconcile loop: plan from the current snapshot, apply, wait for INSYNC.

Runs on every snapshot change (debounced: a burst of changes makes one batch)
and every `reconcile_interval` (drift repair). One reconcile at a time, so one
change in flight per zone. A failed apply leaves Route53 partly updated at
worst batch by batch (each batch is atomic); the next round diffs again and
finishes the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from geodns.config.model import Config
from geodns.health.probing import probe_all_once
from geodns.health.snapshot import HealthSnapshot, SnapshotStore
from geodns.route53.client import Route53Client, Route53Error, Route53Metrics
from geodns.route53.desired import Desired, desired_records
from geodns.route53.model import RecordSet
from geodns.route53.plan import Change, Plan, apply_safety, batches, diff, to_change_batch
from geodns.steering.overridestore import STATE_FILE as OVERRIDES_FILE
from geodns.steering.overridestore import load_overrides
from geodns.timefmt import iso
from geodns.zone.names import to_text

log = logging.getLogger(__name__)


@dataclass
class Result:
    plan: Plan
    applied: list[Change] = field(default_factory=list)
    insync_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and not self.plan.conflicts


class Reconciler:
    """Plan and apply, synchronously (the CLI calls it; the loop runs it in a thread)."""

    def __init__(self, config: Config, client: Route53Client, metrics: Route53Metrics | None = None) -> None:
        assert config.route53 is not None
        self.config = config
        self.client = client
        self.metrics = metrics
        self.last_desired: tuple[RecordSet, ...] | None = None
        self._zones_checked = False

    def check_zones(self) -> None:
        """Every record name must lie inside its hosted zone: Route53 would refuse the
        whole batch, so say which record is wrong before listing or changing anything."""
        assert self.config.route53 is not None
        names = {zone_id: self.client.zone_name(zone_id) for zone_id in self.zone_ids()}
        wrong = []
        for record in self.config.route53.records:
            zone = names[record.hosted_zone_id]
            name = to_text(record.name).lower()
            if not (zone in (".", name) or name.endswith("." + zone)):
                wrong.append(f"{name} is not inside hosted zone {record.hosted_zone_id} ({zone})")
        if wrong:
            raise Route53Error("; ".join(wrong) + ": fix route53.records (nothing was changed)")
        self._zones_checked = True

    def zone_ids(self) -> list[str]:
        assert self.config.route53 is not None
        return sorted({r.hosted_zone_id for r in self.config.route53.records})

    def plan(self, snapshot: HealthSnapshot, *, force: bool = False) -> tuple[Plan, Desired]:
        assert self.config.route53 is not None
        if not self._zones_checked:
            self.check_zones()
        desired = desired_records(self.config, snapshot)
        actual: list[RecordSet] = []
        for zone_id in sorted({r.zone_id for r in desired.records}):
            actual += self.client.list_zone(zone_id)
        plan = diff(desired.records, actual, self.config.route53.owner, desired.why)
        plan = apply_safety(plan, self.config.route53.max_change_fraction, force)
        if self.metrics is not None:
            self.metrics.r53_fail_open.set(len(desired.fail_open))
            self.metrics.r53_conflicts.set(len(plan.conflicts))
        return plan, desired

    def reconcile(self, snapshot: HealthSnapshot, *, force: bool = False) -> Result:
        try:
            plan, desired = self.plan(snapshot, force=force)
        except Route53Error as exc:
            log.error("route53: cannot read the current records: %s", exc)
            return Result(Plan(), errors=[str(exc)])
        for name in desired.fail_open:
            log.warning("route53: %s: every datacenter is down; syncing configured weights (fail open)", name)
        for conflict in plan.conflicts:
            log.error("route53: %s", conflict)
        for note in plan.notes:
            log.warning("route53: %s", note)
        result = Result(plan)
        drift = self.last_desired == desired.records and bool(plan.changes)
        for zone_id, zone_batches in batches(plan.changes).items():
            for batch in zone_batches:
                try:
                    change_id = self.client.change(zone_id, to_change_batch(batch, "geodns health sync"))
                    for change in batch:
                        log.warning("route53: %s", change.line())
                    result.applied += batch
                    seconds = self.client.wait_insync(change_id)
                except Route53Error as exc:
                    log.error(
                        "route53: applying %d change(s) to %s failed: %s (the next round retries)",
                        len(batch),
                        zone_id,
                        exc,
                    )
                    result.errors.append(str(exc))
                    break  # later batches of this zone wait for the next round
                result.insync_seconds.append(seconds)
                if self.metrics is not None:
                    self.metrics.r53_insync.observe(seconds)
                    for change in batch:
                        self.metrics.r53_changes.labels(change.action).inc()
        if drift and result.applied:
            log.warning(
                "route53: repaired drift: %d record set(s) had been changed outside geodns",
                len(result.applied),
            )
            if self.metrics is not None:
                self.metrics.r53_drift.inc(len(result.applied))
        if not result.errors:
            self.last_desired = desired.records
            if self.metrics is not None:
                self.metrics.r53_last_success.set(time.time())
        return result


T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on a daemon thread of its own. Not asyncio.to_thread: the loop's
    executor is joined when geodns exits, and a Route53 call hanging on a dead
    endpoint (30 s read timeout, retried) held SIGTERM for 56 s; an abandoned daemon
    thread holds nothing."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which decides
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(result))

    threading.Thread(target=run, name="route53 call", daemon=True).start()
    return await future


class Route53Sync:
    """The async shell: debounced on snapshot changes, periodic for drift."""

    def __init__(
        self,
        config: Config,
        store: SnapshotStore,
        reconciler: Reconciler,
        known: Callable[[], bool],
        may_write: Callable[[], tuple[bool, str]] | None = None,
    ) -> None:
        assert config.route53 is not None
        self.known = known  # no round before every member has a state: never sync from no information
        # With peers, one instance writes (cluster.writer); the others plan and say who does.
        self.may_write = may_write
        self.settings = config.route53
        self.store = store
        self.reconciler = reconciler
        self._wake = asyncio.Event()
        self._debounce: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        # Rounds that failed in a row, and why: a sync that cannot sync must not look
        # healthy (/readyz, status, the page) just because the daemon answers.
        self.failed_rounds = 0
        self.last_error: str | None = None
        self.last_success: float | None = None
        self.last_round: float | None = None
        self.writing: str = "this instance"

    def start(self) -> None:
        self.store.subscribe(lambda _snapshot: self.trigger())
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="route53 sync")
        self._wake.set()  # a first round at once

    def trigger(self) -> None:
        if self._debounce is None:
            loop = asyncio.get_running_loop()
            self._debounce = loop.call_later(self.settings.debounce, self._fire)

    def _fire(self) -> None:
        self._debounce = None
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.reconcile_interval):
                    await self._wake.wait()
            self._wake.clear()
            if not self.known():
                log.info("route53: waiting for the first probe results before syncing")
                continue  # the snapshot those results publish wakes us again
            if self.may_write is not None:
                allowed, who = self.may_write()
                if not allowed:
                    self.writing = who
                    self._round(await self._plan_only(who))
                    continue
            self.writing = "this instance"
            try:
                result = await off_loop(self.reconciler.reconcile, self.store.current())
                self._round([*result.plan.conflicts, *result.errors])
            except Exception as exc:
                # Never let a bug end the loop: the next round tries again, loudly.
                log.exception("route53: reconcile failed")
                self._round([f"reconcile failed: {type(exc).__name__}: {exc}"])

    def _round(self, errors: list[str]) -> None:
        self.last_round = time.time()
        if not errors:
            if self.failed_rounds >= self.settings.unready_after:
                log.warning("route53: syncing again after %d failed round(s)", self.failed_rounds)
            self.failed_rounds, self.last_error, self.last_success = 0, None, self.last_round
            return
        self.failed_rounds += 1
        self.last_error = "; ".join(errors)
        if self.failed_rounds == self.settings.unready_after:
            log.error(
                "route53: %d rounds in a row failed; /readyz says so until one succeeds: %s",
                self.failed_rounds,
                self.last_error,
            )

    def trouble(self) -> list[str]:
        """Why readiness is withheld: a sync failing for `unready_after` rounds."""
        if self.failed_rounds < self.settings.unready_after:
            return []
        return [f"Route53 sync failing for {self.failed_rounds} rounds: {self.last_error}"]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.failed_rounds == 0,
            "failing": self.failed_rounds >= self.settings.unready_after,
            "failed_rounds": self.failed_rounds,
            "last_error": self.last_error,
            "last_success": iso(self.last_success),
            "last_round": iso(self.last_round),
            "writer": self.writing,
        }

    async def _plan_only(self, who: str) -> list[str]:
        try:
            plan, _ = await off_loop(self.reconciler.plan, self.store.current())
        except Route53Error as exc:
            log.warning("route53: not writing (%s); planning failed: %s", who, exc)
            return [str(exc)]
        log.info("route53: not writing (%s); %d change(s) pending for the writer", who, len(plan.changes))
        return list(plan.conflicts)

    async def stop(self) -> None:
        if self._debounce is not None:
            self._debounce.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def one_shot_snapshot(config: Config) -> HealthSnapshot:
    """Health for a one-shot command: every target probed once, plus the
    overrides a daemon using the same state_dir has saved."""
    states = await probe_all_once(config)
    overrides = load_overrides(
        config.server.state_dir / OVERRIDES_FILE, time.time(), move_aside=False
    ).overrides
    return HealthSnapshot(1, states, tuple(overrides))
