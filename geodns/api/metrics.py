"""Every Prometheus metric geodns exports, defined in one place.

Each daemon owns its own registry (tests run several daemons in one process;
the global default registry would reject the second set of names).
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable, Iterable, Iterator
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from geodns import __version__
from geodns.dns.handler import TCP_CLOSE_REASONS, Stats
from geodns.steering.poolstate import PoolState
from geodns.zone.zone import RType

PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _DnsStatsCollector(Collector):
    """Reads the DNS server's plain counters at scrape time (no cost per query)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        for name, doc, value in (
            ("geodns_dns_queries", "DNS messages received", s.queries),
            ("geodns_dns_cache_hits", "DNS messages answered from the answer cache", s.cache_hits),
            ("geodns_dns_dropped", "DNS messages dropped (no header, responses, send failures)", s.dropped),
            ("geodns_dns_formerr", "DNS messages answered FORMERR", s.formerr),
            (
                "geodns_dns_internal_errors",
                "DNS messages that hit a bug of ours (SERVFAIL)",
                s.internal_errors,
            ),
            (
                "geodns_dns_rate_limited",
                "UDP responses withheld by response rate limiting (dropped, or sent truncated)",
                s.rate_limited,
            ),
            (
                "geodns_dns_rate_slipped",
                "Rate-limited UDP responses sent empty with TC=1 (slip), so a real client retries over TCP",
                s.rate_slipped,
            ),
        ):
            family = CounterMetricFamily(name, doc)
            family.add_metric([], value)
            yield family
        responses = CounterMetricFamily(
            "geodns_dns_responses",
            "DNS replies sent, by rcode and the query's type",
            labels=["rcode", "qtype"],
        )
        for key, count in sorted(s.answers.items()):
            responses.add_metric([rcode_name(key >> 16), qtype_name(key & 0xFFFF)], count)
        yield responses
        closed = CounterMetricFamily(
            "geodns_dns_tcp_closed", "DNS TCP connections closed by geodns, by reason", labels=["reason"]
        )
        for reason in TCP_CLOSE_REASONS:
            closed.add_metric([reason], getattr(s, f"tcp_closed_{reason}"))
        yield closed


RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 9: "NOTAUTH"}
QTYPES = {
    **{t.value: t.name for t in RType},
    13: "HINFO",
    35: "NAPTR",
    41: "OPT",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    50: "NSEC3",
    52: "TLSA",
    64: "SVCB",
    65: "HTTPS",
    99: "SPF",
    251: "IXFR",
    252: "AXFR",
    258: "other",  # every type above CAA, folded (see Stats.answers)
}


def rcode_name(code: int) -> str:
    return RCODES.get(code, str(code))


def qtype_name(code: int) -> str:
    return QTYPES.get(code, f"TYPE{code}")


class _WorkersCollector(Collector):
    """DNS worker processes: how many answer, restarts, and each one's share of queries."""

    def __init__(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures()
        yield GaugeMetricFamily("geodns_dns_workers", "DNS worker processes configured", value=f["workers"])
        yield GaugeMetricFamily(
            "geodns_dns_workers_ready",
            "DNS worker processes serving the current configuration",
            value=f["ready"],
        )
        yield CounterMetricFamily(
            "geodns_dns_worker_restarts",
            "DNS worker processes that ended and were started again",
            f["restarts"],
        )
        per = CounterMetricFamily(
            "geodns_dns_worker_queries", "DNS messages received, by worker", labels=["worker"]
        )
        for index, count in sorted(f["queries"].items()):
            per.add_metric([str(index)], count)
        yield per
        # The process_* metrics are the main process's own: each worker's, read from
        # /proc at scrape time (a replaced worker's CPU counter starts again from 0).
        cpu = CounterMetricFamily(
            "geodns_dns_worker_cpu_seconds", "User and system CPU time of each DNS worker", labels=["worker"]
        )
        rss = GaugeMetricFamily(
            "geodns_dns_worker_resident_memory_bytes", "Resident memory of each DNS worker", labels=["worker"]
        )
        fds = GaugeMetricFamily(
            "geodns_dns_worker_open_fds", "Open file descriptors of each DNS worker", labels=["worker"]
        )
        for index, used in sorted(f["usage"].items()):
            cpu.add_metric([str(index)], used.cpu_seconds)
            rss.add_metric([str(index)], used.resident_bytes)
            fds.add_metric([str(index)], used.open_fds)
        yield from (cpu, rss, fds)


class _ClusterCollector(Collector):
    """Peers, isolation, partition and the governor, read at scrape time from a
    figures function (the cluster node's state)."""

    def __init__(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        f = self.figures()
        up = GaugeMetricFamily(
            "geodns_peer_up", "1 when the peer is heard and its votes counted", labels=["peer"]
        )
        heard = GaugeMetricFamily(
            "geodns_peer_last_heard_seconds", "Seconds since the peer last answered", labels=["peer"]
        )
        for name, (counted, ago) in sorted(f["peers"].items()):
            up.add_metric([name], 1 if counted else 0)
            if ago is not None:
                heard.add_metric([name], ago)
        yield up
        yield heard
        isolated = GaugeMetricFamily(
            "geodns_vantage_isolated",
            "1 when the vantage alone sees most remote targets down: its votes are not counted",
            labels=["vantage"],
        )
        for name, flag in sorted(f["vantages"].items()):
            isolated.add_metric([name], 1 if flag else 0)
        yield isolated
        yield GaugeMetricFamily(
            "geodns_cluster_partitioned",
            "1 while this instance hears no peer and sees most remote targets down (keeps the agreed state)",
            value=1 if f["partitioned"] else 0,
        )
        yield GaugeMetricFamily(
            "geodns_governor_hold",
            "1 while the blast-radius governor holds a surge of downs",
            value=f["hold"],
        )
        yield GaugeMetricFamily(
            "geodns_governor_held_targets", "Targets the governor keeps up", value=f["held"]
        )


class _GeoCollector(Collector):
    def __init__(self, stats: Stats, label: Callable[[int], tuple[str, str]]) -> None:
        self.stats = stats
        self.label = label

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "geodns_geo_answers",
            "Answers of geo pools by the topology rule that steered them and the datacenter it led with",
            labels=["rule", "datacenter"],
        )
        totals: dict[tuple[str, str], int] = {}
        for key, count in list(self.stats.geo.items()):
            labels = self.label(key)
            totals[labels] = totals.get(labels, 0) + count
        for (rule, dc), count in sorted(totals.items()):
            family.add_metric([rule, dc], count)
        yield family


class _OverridesCollector(Collector):
    def __init__(self, overrides: Callable[[], Iterable[Any]]) -> None:
        self.overrides = overrides

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "geodns_overrides_active", "Overrides in force: drains (down) and forced ups", labels=["state"]
        )
        states = [str(o.state) for o in self.overrides()]
        for state in ("down", "up"):
            family.add_metric([state], states.count(state))
        yield family


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
            r.register(_DnsStatsCollector(stats))
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
        self.registry.register(_OverridesCollector(overrides))

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
        self.registry.register(_WorkersCollector(figures))

    def watch_cluster(self, figures: Callable[[], dict[str, Any]]) -> None:
        self.registry.register(_ClusterCollector(figures))

    def watch_geo(self, stats: Stats, label: Callable[[int], tuple[str, str]]) -> None:
        """geodns_geo_answers_total{rule, datacenter}: answers each topology rule
        steered, and the datacenter it led with (per datacenter for nearest)."""
        self.registry.register(_GeoCollector(stats, label))

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
