"""Probe capacity: how many HTTP probes per second the scheduler sustains on one
core with every probe on time, and DNS latency while it runs versus idle.

Layout (2 cores): the geodns daemon runs in this process pinned to core 0; the
HTTP backends (one tiny uvloop responder listening on N loopback ports) and the
DNS load client run in child processes pinned to core 1. Every loop is bounded
in count and time. Traffic stays on 127.0.0.1.

    python bench/probe_capacity.py [--seconds 10] [--targets 1000,2000,4000,6000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402

from bench.common import BACKEND, DNS_CLIENT, write_zone  # noqa: E402
from geodns.config import load  # noqa: E402
from geodns.daemon import Daemon  # noqa: E402

INTERVAL = 2.0
BASE_PORT = 20000


def write_config(tmp: Path, targets: int) -> Path:
    lines = [
        "server: {dns_listen: ['127.0.0.1:0'], http_listen: null, state_dir: state,"
        " max_concurrent_probes: 512}",
        "datacenters: {par: {}}",
        "checks:",
        "  web: {type: http, path: /health, expect_body: OK, interval: 2s, timeout: 1s, rise: 2, fall: 3}",
        "pools:" if targets else "pools: {}",
    ]
    per_pool = 100
    for p in range(0, targets, per_pool):
        lines.append(f"  p{p // per_pool}:\n    check: web\n    members:")
        for i in range(p, min(p + per_pool, targets)):
            lines.append(
                f"      - {{address: 127.1.{i // 254}.{1 + i % 254}, dc: par, "
                f"check_address: 127.0.0.1, check_port: {BASE_PORT + i}}}"
            )
    write_zone(
        tmp, "  www: {type: A, value: 192.0.2.80}\n" + ("  pool: {type: A, pool: p0}\n" if targets else "")
    )
    (tmp / "geodns.yaml").write_text("\n".join(lines) + "\n")
    return tmp / "geodns.yaml"


def percentile(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * q))]


async def run_case(targets: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_config(Path(tmp), targets)
        backend = None
        if targets:
            backend = subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is measured
                [sys.executable, "-c", BACKEND, str(BASE_PORT), str(targets), str(seconds + 30)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert backend.stdout is not None
            assert backend.stdout.readline().strip() == "ready"
        daemon = Daemon(load(path))
        try:
            await daemon.start()
            port = daemon.dns_bound()[0].port
            await asyncio.sleep(INTERVAL * 1.5)  # past the start-up burst
            reg = daemon.metrics_registry.registry
            probes0 = reg.get_sample_value("geodns_probes_total", {"check": "web"}) or 0.0
            late0 = reg.get_sample_value("geodns_probes_late_total", {"check": "web"}) or 0.0
            cpu0 = time.process_time()
            client = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                DNS_CLIENT,
                str(port),
                "2000",
                str(seconds),
                stdout=asyncio.subprocess.PIPE,
            )
            t0 = time.monotonic()
            out, _ = await client.communicate()
            elapsed = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            probes = (reg.get_sample_value("geodns_probes_total", {"check": "web"}) or 0.0) - probes0
            late = (reg.get_sample_value("geodns_probes_late_total", {"check": "web"}) or 0.0) - late0
            got, sent, p50, p99 = out.decode().split()
            return {
                "targets": targets,
                "wanted": targets / INTERVAL,
                "probes_per_s": probes / elapsed,
                "on_time": 1.0 - (late / probes if probes else 0.0),
                "cpu": cpu / elapsed,
                "dns_p50_ms": float(p50) * 1000,
                "dns_p99_ms": float(p99) * 1000,
                "dns_lost": 1.0 - int(got) / max(1, int(sent)),
            }
        finally:
            await daemon.stop()
            if backend is not None:
                backend.kill()
                backend.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--targets", default="1000,2000,4000,6000")
    parser.add_argument("--runs", type=int, default=3, help="runs per case; medians are printed")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    os.sched_setaffinity(0, {0})
    logging.basicConfig(level=logging.ERROR)  # thousands of state lines would measure the terminal
    cases = [0, *[int(t) for t in args.targets.split(",")]]
    print(
        f"probe capacity, {args.runs} run(s) x {args.seconds:g}s per case, interval {INTERVAL:g}s, "
        f"daemon pinned to core 0, backends and DNS client (2,000 q/s) on core 1"
    )
    print(
        f"{'targets':>8} {'want/s':>7} {'probes/s':>9} {'on-time':>8} {'cpu':>5} "
        f"{'dns p50':>8} {'dns p99':>8} {'p99/idle':>8} {'lost':>6}"
    )
    idle_p99 = None
    for targets in cases:
        runs = []
        for _ in range(args.runs):
            runs.append(uvloop.run(run_case(targets, args.seconds)))
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        if targets == 0:
            idle_p99 = med["dns_p99_ms"]
        ratio = med["dns_p99_ms"] / idle_p99 if idle_p99 else float("nan")
        print(
            f"{targets:>8} {med['wanted']:>7.0f} {med['probes_per_s']:>9.0f} {med['on_time']:>8.2%} "
            f"{med['cpu']:>5.0%} {med['dns_p50_ms']:>6.2f}ms {med['dns_p99_ms']:>6.2f}ms "
            f"{ratio:>7.1f}x {med['dns_lost']:>6.1%}"
        )


if __name__ == "__main__":
    main()
