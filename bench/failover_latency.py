"""Failover latency: from a datacenter's backend dying (SIGKILL) to the first
DNS answer that no longer names it, and back after it returns. Medians and
maxima over several runs, next to the bounds the configuration implies.

The daemon runs as `geodns serve` (a real process); the backends are child
processes on 127.0.0.81 (par) and 127.0.0.82 (ams); a DNS client polls every
5 ms. Every loop is bounded. Traffic stays on loopback.

    python bench/failover_latency.py [--runs 5] [--interval 1s] [--fall 3] [--rise 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import free_port, serve_cmd, write_zone  # noqa: E402
from geodns.config.fields import to_duration  # noqa: E402

PAR, AMS = "127.0.0.81", "127.0.0.82"

BACKEND = r"""
import asyncio, sys
from aiohttp import web
async def main(host):
    app = web.Application()
    app.router.add_get("/health", lambda r: web.Response(text="OK"))
    runner = web.AppRunner(app); await runner.setup()
    await web.TCPSite(runner, host, 8080, reuse_address=True).start()
    print("ready", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main(sys.argv[1]))
"""


def backend(host: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", BACKEND, host], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def ask(port: int, sock: socket.socket, qid: int) -> str | None:
    q = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + b"\x03www\x07example\x04test\x00\x00\x01\x00\x01"
    sock.sendto(q, ("127.0.0.1", port))
    try:
        data = sock.recv(512)
    except TimeoutError:
        return None
    if len(data) < 16 or struct.unpack_from("!H", data)[0] != qid:
        return None
    # The first answer's address: the last four bytes of the first A record.
    ancount = struct.unpack_from("!H", data, 6)[0]
    return socket.inet_ntoa(data[-4:]) if ancount == 1 else f"{ancount} answers"


def wait_answer(port: int, want: str, limit: float) -> float:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    start = time.monotonic()
    qid = 0
    try:
        while time.monotonic() - start < limit:
            qid = (qid + 1) & 0xFFFF
            if ask(port, sock, qid) == want:
                return time.monotonic() - start
            time.sleep(0.005)
    finally:
        sock.close()
    raise RuntimeError(f"answer never became {want} within {limit}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--timeout", default="500ms")
    parser.add_argument("--fall", type=int, default=3)
    parser.add_argument("--rise", type=int, default=2)
    args = parser.parse_args()
    interval, timeout = to_duration(args.interval), to_duration(args.timeout)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_zone(root, "  www: {type: A, pool: web}\n")
        (root / "geodns.yaml").write_text(f"""\
server: {{http_listen: null, state_dir: state}}
datacenters: {{par: {{}}, ams: {{}}}}
checks:
  web: {{type: http, port: 8080, path: /health, expect_body: OK, interval: {args.interval},
         timeout: {args.timeout}, rise: {args.rise}, fall: {args.fall}}}
pools:
  web:
    check: web
    datacenters: [par, ams]
    members: [{{address: {PAR}, dc: par}}, {{address: {AMS}, dc: ams}}]
""")
        backends = {PAR: backend(PAR), AMS: backend(AMS)}
        port = free_port()
        daemon = subprocess.Popen(
            serve_cmd(root / "geodns.yaml", port),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            wait_answer(port, PAR, 10)
            failovers, recoveries = [], []
            for run in range(args.runs):
                time.sleep(interval * 1.37 * (run % 3) / 3)  # land the death at different points of the cycle
                backends[PAR].send_signal(signal.SIGKILL)
                backends[PAR].wait()
                failovers.append(wait_answer(port, AMS, 30))
                backends[PAR] = backend(PAR)
                recoveries.append(wait_answer(port, PAR, 30))
                print(
                    f"run {run + 1}: failover {failovers[-1]:.2f}s, recovery {recoveries[-1]:.2f}s",
                    flush=True,
                )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)
            for b in backends.values():
                b.kill()
                b.wait()
    print(
        f"\nfailover latency over {args.runs} runs (interval {interval:g}s, timeout {timeout:g}s, "
        f"fall {args.fall}, rise {args.rise}):"
    )
    print(
        f"  death -> answers move: median {statistics.median(failovers):.2f}s, max {max(failovers):.2f}s; "
        f"interval x fall = {interval * args.fall:.2f}s, + timeout = {interval * args.fall + timeout:.2f}s"
    )
    print(
        f"  return -> answers back: median {statistics.median(recoveries):.2f}s, max {max(recoveries):.2f}s; "
        f"interval x rise = {interval * args.rise:.2f}s"
    )


if __name__ == "__main__":
    main()
