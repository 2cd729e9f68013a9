"""Metrics read at scrape time from figures the daemon keeps anyway (the DNS
server's counters, the workers, the cluster, geo answers, overrides): nothing is
paid per query. The registry and the metrics fed as things happen: metrics.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from geodns.dns.handler import TCP_CLOSE_REASONS, Stats
from geodns.zone.zone import RType


class DnsStatsCollector(Collector):
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


class WorkersCollector(Collector):
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


class ClusterCollector(Collector):
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


class GeoCollector(Collector):
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


class OverridesCollector(Collector):
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
