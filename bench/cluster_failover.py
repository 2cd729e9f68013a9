"""Three instances in network namespaces (one per datacenter, with its backend),
measured as an operator would watch them: how long a failover takes to reach
every instance's answers, whether partitions and broken paths ever change an
answer they should not, and what the exchange adds to answering.

- S1: par's backends die -> seconds until every instance answers without par;
- S2: par burns (backend and instance) -> until ams and nyc do;
- false failovers over repeated S3 (par cut off: ams/nyc must drop par, par must
  hold everything), S4 (ams's instance loses its routes: nobody changes), S5 (a
  broken path from ams to nyc's backend: nobody changes), sampled every 100 ms;
- DNS latency (p50/p99 of 2,000 queries to one instance) with peers exchanging
  vs three instances each alone.

Needs root and iproute2; nothing leaves the namespaces it creates.

    sudo python bench/cluster_failover.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402

from tests.netlab import Lab, available, www_answer  # noqa: E402

DCS = ("par", "ams", "nyc")
TOKEN = "bench-cluster-secret"
INTERVAL, FALL, RISE, CLUSTER_INTERVAL = 0.5, 2, 2, 0.5
BOUND = INTERVAL * FALL + CLUSTER_INTERVAL + 1.0

Answers = dict[str, set[str] | None]


def answers(lab: Lab, cut_off: str | None = None) -> Answers:
    return {
        dc: lab.call(www_answer, lab.instance_ip(dc), inside_dc=dc if dc == cut_off else None) for dc in DCS
    }


def started(root: Path, *, cluster: bool = True) -> Lab:
    lab = Lab(DCS)
    lab.start_cluster(
        root,
        TOKEN,
        interval=INTERVAL,
        rise=RISE,
        fall=FALL,
        cluster_interval=CLUSTER_INTERVAL,
        cluster=cluster,
    )
    everyone = {lab.backend_ip(dc) for dc in DCS}
    deadline = time.monotonic() + 30
    while not all(v == everyone for v in answers(lab).values()):
        if time.monotonic() > deadline:
            lab.close()
            raise RuntimeError("the lab never came up")
        time.sleep(0.1)
    time.sleep(2 * CLUSTER_INTERVAL)  # every peer heard
    return lab


def until(lab: Lab, ok: Callable[[Answers], bool], timeout: float) -> float:
    began = time.monotonic()
    while not ok(answers(lab)):
        if time.monotonic() - began > timeout:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - began


def failover(runs: int, burn: bool) -> list[float]:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            lab = started(Path(tmp))
            try:
                off_par = {lab.backend_ip("ams"), lab.backend_ip("nyc")}
                lab.kill("backend-par")
                if burn:
                    lab.kill("geodns-par")
                watched = ("ams", "nyc") if burn else DCS
                times.append(until(lab, lambda a: all(a[dc] == off_par for dc in watched), 10.0))  # noqa: B023
            finally:
                lab.close()
    return times


def false_failovers(runs: int) -> dict[str, tuple[int, int]]:
    """Per scenario: (samples where some instance answered what it should not, samples)."""
    out: dict[str, tuple[int, int]] = {}
    for scenario in ("S3", "S4", "S5"):
        bad = total = 0
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                lab = started(Path(tmp))
                try:
                    everyone = {lab.backend_ip(dc) for dc in DCS}
                    off_par = everyone - {lab.backend_ip("par")}
                    cut_off = None
                    if scenario == "S3":
                        lab.cut("par")
                        cut_off = "par"
                        expected = {"par": everyone, "ams": off_par, "nyc": off_par}
                        time.sleep(BOUND + 0.5)  # the others' failover is the right change
                    elif scenario == "S4":
                        lab.lose_routes("ams")
                        cut_off = "ams"  # asked from inside its own datacenter: its replies go nowhere else
                        expected = dict.fromkeys(DCS, everyone)
                    else:
                        lab.blackhole("ams", lab.backend_ip("nyc"))
                        expected = dict.fromkeys(DCS, everyone)
                    end = time.monotonic() + 5.0
                    while time.monotonic() < end:
                        total += 1
                        bad += answers(lab, cut_off) != expected
                        time.sleep(0.1)
                finally:
                    lab.close()
        out[scenario] = (bad, total)
    return out


def _latency(lab: Lab, count: int) -> tuple[float, float, int]:
    def measure() -> tuple[list[float], int]:
        query = dns.message.make_query("www.example.test.", "A")
        times, lost = [], 0
        for _ in range(count):
            began = time.perf_counter()
            try:
                dns.query.udp(query, lab.instance_ip("ams"), port=5300, timeout=1)
            except (dns.exception.Timeout, OSError):
                lost += 1
                continue
            times.append(time.perf_counter() - began)
        return sorted(times), lost

    times, lost = lab.call(measure)
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000, lost


def latency(count: int) -> dict[str, tuple[float, float, int]]:
    out = {}
    for label, cluster in (("each alone", False), ("peers exchanging", True)):
        with tempfile.TemporaryDirectory() as tmp:
            lab = started(Path(tmp), cluster=cluster)
            try:
                out[label] = _latency(lab, count)
            finally:
                lab.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    if (why := available()) is not None:
        sys.exit(f"cannot run: {why}")
    print(f"check interval {INTERVAL}s, fall {FALL}, cluster.interval {CLUSTER_INTERVAL}s: bound {BOUND:g}s")
    for label, burn in (
        ("S1 par's backends die (all three off par)", False),
        ("S2 par burns (ams, nyc)", True),
    ):
        times = failover(args.runs, burn)
        print(
            f"{label}: median {statistics.median(times):.2f}s, max {max(times):.2f}s over {args.runs}",
            flush=True,
        )
    for scenario, (bad, total) in false_failovers(max(1, args.runs // 2)).items():
        print(f"{scenario}: {bad} wrong answer sets in {total} samples", flush=True)
    for label, (p50, p99, lost) in latency(args.queries).items():
        print(f"DNS latency, {label}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, {lost} lost", flush=True)


if __name__ == "__main__":
    main()
