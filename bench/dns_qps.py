"""DNS serving speed, geodns next to a reference C server in the same run.

Starts `geodns serve` and the references (gdnsd, PowerDNS, or Knot) on loopback ports,
each pinned to core 0, with the same zone (geodns exports it; pool records
become their current members), and drives them with dnsperf pinned to core 1.
Prints queries/s and average latency per query mix, the ratio
geodns/reference (medians of --runs), the p99 latency under a fixed 20,000 q/s
load, and a cost-growth table: q/s, resident memory and start-up time with
10, 10,000 and 100,000 records.

    apt-get install dnsperf gdnsd knot pdns-server pdns-backend-bind   # if missing
    python bench/dns_qps.py [--seconds 5] [--runs 3] [--reference gdnsd,pdns,knot]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import BACKEND, free_port, serve_cmd, write_zone  # noqa: E402
from geodns.config import Config, load  # noqa: E402
from geodns.dns.zonetext import zone_text  # noqa: E402
from geodns.steering.policy import AllMembers  # noqa: E402
from geodns.zone.names import to_text  # noqa: E402

CONFIG = """\
server: {http_listen: null, state_dir: state, nsid: bench}
datacenters: {par: {}, ams: {}}
checks: {web: {type: http, path: /health, expect_body: OK, interval: 2s, timeout: 1s}}
pools:
  fo: {policy: failover, datacenters: [par, ams], members: [{address: 192.0.2.11, dc: par},
       {address: 192.0.2.12, dc: par}, {address: 192.0.2.21, dc: ams}]}
  wt: {policy: weighted, members: [{address: 192.0.2.31, dc: par, weight: 3},
       {address: 192.0.2.32, dc: ams, weight: 1}]}
  geo: {policy: geo, datacenters: [par, ams], members: [{address: 192.0.2.41, dc: par},
        {address: 192.0.2.42, dc: ams}]}
topology:
  - {match: 198.51.100.0/24, prefer: [ams]}
"""
RECORDS = (
    "  www: {type: A, value: 192.0.2.1}\n  fo: {type: A, pool: fo}\n  wt: {type: A, pool: wt}\n"
    "  geo: {type: A, pool: geo}\n"
)
ECS_OPTION = "8:00011800c63364"  # family 1, /24, scope 0, 198.51.100.0/24


def make_config(root: Path, fillers: int, probed: int = 0, base_port: int = 0) -> Path:
    filler = "".join(
        f"  h{i}: {{type: A, value: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}}}\n" for i in range(fillers)
    )
    write_zone(root, RECORDS + filler)
    config = CONFIG
    if probed:
        # `probed` members in a pool of their own, each checked over HTTP every 2 s.
        members = "\n".join(
            f"      - {{address: 127.1.{i // 250}.{1 + i % 250}, dc: par, check_address: 127.0.0.1, "
            f"check_port: {base_port + i}}}"
            for i in range(probed)
        )
        config = config.replace(
            "pools:\n", f"pools:\n  probed:\n    check: web\n    members:\n{members}\n", 1
        )
    (root / "geodns.yaml").write_text(config)
    return root / "geodns.yaml"


def ask(port: int, name: str = "www.example.test", timeout: float = 0.5) -> bool:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    q = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, ("127.0.0.1", port))
            return len(s.recv(512)) > 12
        except OSError:
            return False


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    startup: float

    def rss_mb(self) -> float:
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            text = Path(f"/proc/{pid}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+)", text)[1])  # type: ignore[index]
            if rss > 5000:  # the real server, not a thin wrapper
                return rss / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def start(name: str, cmd: list[str], port: int, cwd: Path) -> Server:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *cmd],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = t0 + 120
    while not ask(port, timeout=0.05):
        if proc.poll() is not None or time.perf_counter() > deadline:
            raise RuntimeError(f"{name} did not start: {(cwd / f'{name}.log').read_text()[-2000:]}")
        time.sleep(0.02)
    return Server(name, port, proc, time.perf_counter() - t0)


def start_geodns(root: Path) -> Server:
    port = free_port()
    return start("geodns", serve_cmd(root / "geodns.yaml", port), port, root)


def start_reference(kind: str, root: Path, config_path: Path) -> Server:
    config = load(config_path)
    ref = root / kind
    (ref / "zones").mkdir(parents=True)
    port = free_port()
    for origin, zone in config.zones.zones.items():
        (ref / "zones" / to_text(origin).rstrip(".")).write_text(zone_text(zone, AllMembers(config.pools)))
    if kind == "gdnsd":
        for sub in ("run", "state"):
            (ref / sub).mkdir()
        # Own run and state dirs: gdnsd's control socket would clash with any other instance.
        (ref / "config").write_text(
            f"options => {{ listen => [ 127.0.0.1:{port} ], run_dir => {ref}/run, "
            f"state_dir => {ref}/state }}\n"
        )
        return start("gdnsd", ["gdnsd", "-c", str(ref), "start"], port, ref)
    zones = "".join(
        f"  - domain: {to_text(o)}\n    file: {ref / 'zones' / to_text(o).rstrip('.')}\n"
        for o in config.zones.zones
    )
    if kind in ("pdns", "pdns-lua"):
        named = ""
        for origin, zone in config.zones.zones.items():
            path = ref / "zones" / to_text(origin).rstrip(".")
            if kind == "pdns-lua":
                path.write_text(_lua_zone(zone_text(zone, AllMembers(config.pools)), config))
            named += f'zone "{to_text(origin).rstrip(".")}" {{ type master; file "{path}"; }};\n'
        (ref / "named.conf").write_text(named)
        (ref / "pdns.conf").write_text(
            f"launch=bind\nbind-config={ref}/named.conf\nlocal-address=127.0.0.1\nlocal-port={port}\n"
            f"socket-dir={ref}\ndaemon=no\nguardian=no\nsetuid=\nsetgid=\nenable-lua-records=yes\n"
        )
        return start(kind, ["pdns_server", f"--config-dir={ref}"], port, ref)
    (ref / "knot.conf").write_text(
        f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {ref}\n"
        f"database:\n    storage: {ref}/db\nzone:\n{zones}"
    )
    return start("knot", ["knotd", "-c", str(ref / "knot.conf")], port, ref)


def _lua_zone(text: str, config: Config) -> str:
    """PowerDNS's own way to answer from health-checked members: LUA records.
    Pool-backed names become `ifportup(8080, {...})` over the pool's members,
    as PowerDNS documents them; everything else stays as exported."""
    pooled = {f"{name}.example.test.": pool for name, pool in (("fo", "fo"), ("wt", "wt"), ("geo", "geo"))}
    out, done = [], set()
    for line in text.splitlines():
        owner = line.split(" ", 1)[0]
        if owner in pooled and " IN A " in line:
            if owner not in done:
                members = ", ".join(f"'{m.address}'" for m in config.pools[pooled[owner]].members)
                out.append(f'{owner} 30 IN LUA A "ifportup(8080, {{{members}}})"')
                done.add(owner)
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def dnsperf_cmd(port: int, queries: Path, seconds: float, *extra: str) -> list[str]:
    """dnsperf pinned to core 1 (the servers have core 0)."""
    return [
        "taskset",
        "-c",
        "1",
        "dnsperf",
        "-s",
        "127.0.0.1",
        "-p",
        str(port),
        "-d",
        str(queries),
        "-l",
        str(seconds),
        *extra,
    ]


def dnsperf(port: int, queries: Path, seconds: float, extra: list[str]) -> tuple[float, float]:
    out = subprocess.run(
        dnsperf_cmd(port, queries, seconds, "-c", "8", "-q", "200", *extra),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out)[1])  # type: ignore[index]
    avg = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out)[1])  # type: ignore[index]
    return qps, avg * 1000


def p99_under_load(port: int, queries: Path, seconds: float) -> float:
    """p99 of a light probe stream while dnsperf holds 20,000 q/s."""
    load_proc = subprocess.Popen(
        dnsperf_cmd(port, queries, seconds, "-Q", "20000", "-c", "4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    latencies = []
    labels = b"\x03www\x07example\x04test\x00"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        end = time.perf_counter() + max(0.5, seconds - 1)
        qid = 0
        while time.perf_counter() < end:
            qid = (qid + 1) & 0xFFFF
            q = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"
            t0 = time.perf_counter()
            s.sendto(q, ("127.0.0.1", port))
            try:
                while struct.unpack_from("!H", s.recv(512))[0] != qid:
                    pass
                latencies.append(time.perf_counter() - t0)
            except TimeoutError:
                latencies.append(1.0)
            time.sleep(0.002)
    load_proc.wait()
    latencies.sort()
    return latencies[int(len(latencies) * 0.99)] * 1000


def query_file(root: Path, name: str, lines: list[str]) -> Path:
    path = root / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def probe_load(root: Path, args: argparse.Namespace, probed: int = 1000, base_port: int = 21000) -> None:
    """Static-A q/s with and without `probed` HTTP checks every 2 s (500 probes/s)."""
    backend = subprocess.Popen(
        [sys.executable, "-c", BACKEND, str(base_port), str(probed), "600"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert backend.stdout is not None and backend.stdout.readline().strip() == "ready"
        static = root / "static.txt"
        results = {}
        for label, count in (("idle", 0), (f"{probed} HTTP checks every 2 s", probed)):
            case = root / f"probe-{count}"
            case.mkdir()
            make_config(case, 10, count, base_port)
            server = start_geodns(case)
            try:
                time.sleep(3)  # past the start-up burst of probes
                results[label] = statistics.median(
                    dnsperf(server.port, static, args.seconds, [])[0] for _ in range(args.runs)
                )
            finally:
                server.stop()
        idle = results["idle"]
        print()
        for label, qps in results.items():
            print(f"static A q/s, {label:<26} {qps:>9,.0f}  ({qps / idle:.2f} of idle)")
    finally:
        backend.kill()
        backend.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--reference",
        default="gdnsd,pdns",
        help="comma-separated: gdnsd, knot, pdns (PowerDNS, bind backend)",
    )
    parser.add_argument("--growth", default="10,10000,100000")
    args = parser.parse_args()
    references = [r for r in args.reference.split(",") if r]
    tools = {"gdnsd": "gdnsd", "knot": "knotd", "pdns": "pdns_server", "pdns-lua": "pdns_server"}
    for needed in ("dnsperf", "taskset", *(tools[r] for r in references)):
        if shutil.which(needed) is None:
            sys.exit(f"{needed} is missing: apt-get install dnsperf gdnsd knot pdns-server pdns-backend-bind")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config_path = make_config(root, 10)
        mixes = {
            "static A": (query_file(root, "static", ["www.example.test A"]), []),
            "pool A (failover)": (query_file(root, "fo", ["fo.example.test A"]), []),
            "pool A (weighted)": (query_file(root, "wt", ["wt.example.test A"]), []),
            "NXDOMAIN": (query_file(root, "nx", [f"nx{i}.example.test A" for i in range(1000)]), []),
            "ECS (geo pool)": (query_file(root, "ecs", ["geo.example.test A"]), ["-E", ECS_OPTION]),
            "static A over TCP": (query_file(root, "static", ["www.example.test A"]), ["-m", "tcp"]),
        }
        print(
            f"geodns vs {', '.join(references)}: servers pinned to core 0, dnsperf (8 clients) to core 1; "
            f"medians of {args.runs} x {args.seconds:g}s"
        )
        header = f"{'mix':<20} {'geodns q/s':>11} {'avg ms':>7}"
        for ref in references:
            header += f" {ref + ' q/s':>11} {'avg ms':>7} {'ratio':>6}"
        print(header)
        servers = [start_geodns(root)] + [start_reference(ref, root, config_path) for ref in references]
        try:
            for label, (queries, extra) in mixes.items():
                row = f"{label:<20}"
                ours = 0.0
                for server in servers:
                    runs = [dnsperf(server.port, queries, args.seconds, extra) for _ in range(args.runs)]
                    q, a = statistics.median(q for q, _ in runs), statistics.median(a for _, a in runs)
                    row += f" {q:>11,.0f} {a:>7.3f}"
                    if server is servers[0]:
                        ours = q
                    else:
                        row += f" {ours / q:>6.2f}"
                print(row)
            static = mixes["static A"][0]
            p99 = ", ".join(
                f"{s.name} {p99_under_load(s.port, static, args.seconds):.3f} ms" for s in servers
            )
            print(f"\np99 latency of a probe stream under 20,000 q/s: {p99}")
        finally:
            for server in servers:
                server.stop()
        probe_load(root, args)

    print("\ncost growth (geodns; q/s over 1,000 random names of the zone)")
    print(f"{'records':>8} {'start-up':>9} {'restart':>8} {'RSS MB':>7} {'q/s':>9}")
    for n in (int(x) for x in args.growth.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_config(root, n)
            server = start_geodns(root)
            try:
                rng = random.Random(n)
                names = [f"h{rng.randrange(n)}.example.test A" for _ in range(1000)]
                queries = query_file(root, "growth", names)
                qps = statistics.median(
                    dnsperf(server.port, queries, args.seconds, [])[0] for _ in range(args.runs)
                )
                rss = server.rss_mb()
            finally:
                server.stop()
            # A restart finds the compiled zone in state_dir/zonecache.
            again = start_geodns(root)
            again.stop()
            print(f"{n:>8,} {server.startup:>8.2f}s {again.startup:>7.2f}s {rss:>7.1f} {qps:>9,.0f}")


if __name__ == "__main__":
    main()
