"""Every Prometheus metric geodns exports: the registry, the metrics fed as things
happen, and the collectors (collectors.py) read at scrape time.

Each daemon owns its own registry (tests run several daemons in one process;
the global default registry would reject the second set of names).
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from geodns import __version__
from geodns.api.collectors import (
    ClusterCollector,
    DnsStatsCollector,
    GeoCollector,
    OverridesCollector,
    WorkersCollector,
)
from geodns.dns.handler import Stats
from geodns.steering.poolstate import PoolState

PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, stats: Stats | None = None) -> None:
        # No `_created` series: one per counter and label set, of no use to an
        # alert, doubling what a scrape carries.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.member_up = Gauge(
            "geodns_member_up",
            "1 when the member is up, 0 when down or unknown",
            ["pool", "member", "dc"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "geodns_probe_duration_seconds", "Time a probe took", ["check"], buckets=PROBE_BUCKETS, registry=r
        )
        self.probe_failures = Counter(
            "geodns_probe_failures_total",
            "Failed probes by check and reason class",
            ["check", "reason"],
            registry=r,
        )
        self.checker_errors = Counter(
            "geodns_checker_errors_total",
            "Probes that failed because of this host (fds, buffers, a stalled loop, overload): states held",
            ["check", "cause"],
            registry=r,
        )
        self.probes = Counter("geodns_probes_total", "Probes run", ["check"], registry=r)
        self.probes_late = Counter(
            "geodns_probes_late_total",
            "Probes started more than 10% of an interval late",
            ["check"],
            registry=r,
        )
        self.state_changes = Counter(
            "geodns_state_changes_total", "Member health state changes", ["pool", "member", "to"], registry=r
        )
        self.overrides_unreadable = Gauge(
            "geodns_overrides_unreadable",
            "Saved overrides that could not be read at start-up (drains may be missing) until acknowledged",
            registry=r,
        )
        self.loop_lag = Gauge(
            "geodns_event_loop_lag_seconds",
            "Longest delay of the event loop in the last 10 s (a stalled loop answers nothing)",
            registry=r,
        )
        self.snapshot_version = Gauge("geodns_snapshot_version", "Version of the health snapshot", registry=r)
        self.ready = Gauge("geodns_ready", "1 once every checked member has a fresh probe result", registry=r)
        self.r53_calls = Counter(
            "geodns_route53_api_calls_total",
            "Route53 API calls by operation and result",
            ["operation", "result"],
            registry=r,
        )
        self.r53_throttles = Counter(
            "geodns_route53_throttles_total",
            "Route53 calls answered Throttling or PriorRequestNotComplete",
            registry=r,
        )
        self.r53_changes = Counter(
            "geodns_route53_changes_total", "Record set changes applied", ["action"], registry=r
        )
        self.r53_insync = Histogram(
            "geodns_route53_insync_seconds",
            "Seconds from ChangeResourceRecordSets to INSYNC",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
            registry=r,
        )
        self.r53_last_success = Gauge(
            "geodns_route53_last_success_timestamp_seconds",
            "When a reconcile last completed cleanly",
            registry=r,
        )
        self.r53_drift = Counter(
            "geodns_route53_drift_repairs_total",
            "Changes that put back what someone edited by hand",
            registry=r,
        )
        self.r53_fail_open = Gauge(
            "geodns_route53_fail_open",
            "Names whose every datacenter is down (synced with configured weights)",
            registry=r,
        )
        self.r53_conflicts = Gauge(
            "geodns_route53_conflicts",
            "Names refused because records not owned by geodns live there",
            registry=r,
        )
        self.pool_fallback = Gauge(
            "geodns_pool_fallback",
            "1 while the pool answers with its fallback because no member is up (failing open)",
            ["pool"],
            registry=r,
        )
        self.pool_answering = Gauge(
            "geodns_pool_answering",
            "1 for each datacenter the pool answers from now (for a client no topology rule matches)",
            ["pool", "dc"],
            registry=r,
        )
        if stats is not None:
            r.register(DnsStatsCollector(stats))
        ProcessCollector(registry=r)  # process_cpu_seconds_total, _resident_memory_bytes, _open_fds, ...
        self.build_info = Gauge(
            "geodns_build_info", "Always 1; the labels say what runs", ["version", "python"], registry=r
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.reloads = Counter(
            "geodns_reloads_total",
            "Configuration reloads (SIGHUP), by result: ok or failed",
            ["result"],
            registry=r,
        )
        for result in ("ok", "failed"):
            self.reloads.labels(result)  # both series exist from the start: rate() needs them
        self.last_reload = Gauge(
            "geodns_last_reload_timestamp_seconds",
            "When a reload last succeeded (start-up counts)",
            registry=r,
        )
        self.last_reload.set(time.time())
        self.last_reload_ok = Gauge(
            "geodns_last_reload_successful", "1 when the last reload succeeded, 0 when it failed", registry=r
        )
        self.last_reload_ok.set(1)

    def reloaded(self, ok: bool, when: float) -> None:
        self.reloads.labels("ok" if ok else "failed").inc()
        self.last_reload_ok.set(1 if ok else 0)
        if ok:
            self.last_reload.set(when)

    def watch_overrides(self, overrides: Callable[[], Iterable[Any]]) -> None:
        """geodns_overrides_active{state}: drains (down) and forced ups in force now."""
        self.registry.register(OverridesCollector(overrides))

    def set_pool(self, state: PoolState | str) -> None:
        """A pool's fallback and answering gauges; a name alone removes the pool's series."""
        name = state if isinstance(state, str) else state.pool
        for labels in [s.labels for m in self.pool_answering.collect() for s in m.samples]:
            if labels["pool"] == name:
                self.pool_answering.remove(name, labels["dc"])
        if isinstance(state, str):
            with contextlib.suppress(KeyError):
                self.pool_fallback.remove(name)
            return
        self.pool_fallback.labels(name).set(1 if state.failing_open else 0)
        for dc in state.answering:
            self.pool_answering.labels(name, dc).set(1)

    def watch_workers(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(WorkersCollector(figures))

    def watch_cluster(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(ClusterCollector(figures))

    def watch_geo(self, stats: Stats, label: Callable[[int], tuple[str, str]]) -> None:
        """geodns_geo_answers_total{rule, datacenter}: answers each topology rule
        steered, and the datacenter it led with (per datacenter for nearest)."""
        self.registry.register(GeoCollector(stats, label))

    def watch_route53(self, failed_rounds: Callable[[], int]) -> None:
        """Only an instance that syncs has this series: alerts can tell the two apart."""
        gauge = Gauge(
            "geodns_route53_sync_failed_rounds",
            "Route53 reconcile rounds failed in a row (0: the last one succeeded)",
            registry=self.registry,
        )
        gauge.set_function(failed_rounds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
