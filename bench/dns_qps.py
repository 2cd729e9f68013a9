"""DNS serving speed on good days and bad ones, geodns beside C servers in the same run.

Servers are pinned to core 0 and dnsperf to core 1 (taskset). Each section prints
a table; medians of --runs.

- hits: the answer cache on a good day (the same names again and again): q/s
  and server CPU per answered query at a fixed offered rate (--rate).
- misses: what a bad day sends: unique random names (a random-subdomain
  attack), every name of a 100,000-record zone once in random order, a new ECS
  subnet per query, and a new letter case per query (0x20 resolvers).
- flap: 10 and 200 members changing state every second vs the same members
  stable: q/s and the p99 of a probe stream under 20,000 q/s.
- workers: `server.workers` 1 vs 2: CPU per query, how the kernel splits the
  load, and how long a drain takes to be in every worker's answers.
- growth: start-up, restart, memory (PSS of every process) and q/s with
  10 to 1,000,000 records.
- probes: static q/s with 1,000 HTTP checks every 2 s on the same core.
- ratelimit: what response rate limiting costs on cache hits, off vs on, under
  and over the rate, and under a flood.

    apt-get install dnsperf gdnsd knot nsd pdns-server pdns-backend-bind   # if missing
    python bench/dns_qps.py [--section hits,misses,...] [--reference gdnsd,knot,nsd]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import BACKEND, free_port  # noqa: E402
from bench.loadgen import (  # noqa: E402
    Cost,
    cpu_per_query,
    dnsperf,
    p99_under_load,
    query_file,
    random_case,
    unique_ecs,
    wire_file,
    wire_query,
)
from bench.servers import Server, start_geodns, start_reference  # noqa: E402

CONFIG = """\
server: {http_listen: HTTP, state_dir: state, nsid: bench, workers: WORKERS, rate_limit: RATE}
datacenters: {par: {}, ams: {}}
checks:
  web: {type: http, path: /health, expect_body: OK, interval: 2s, timeout: 1s}
  flappy: {type: http, path: /health, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}
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
C_SERVERS = ("gdnsd", "knot", "nsd")
BIG = 100_000


def make_config(
    root: Path,
    fillers: int,
    probed: int = 0,
    base_port: int = 0,
    *,
    workers: int = 1,
    check: str = "web",
    http: int | None = None,
    rate_limit: str = "{}",
) -> Path:
    """The bench zone with `fillers` extra A records (h0, h1, ...); `probed` members
    in a pool of their own (`probed.example.test`), checked on base_port + i."""
    from bench.common import write_zone  # noqa: PLC0415 - keeps the module header short

    filler = "".join(
        f"  h{i}: {{type: A, value: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}}}\n" for i in range(fillers)
    )
    write_zone(root, RECORDS + ("  probed: {type: A, pool: probed}\n" if probed else "") + filler)
    config = (
        CONFIG.replace("WORKERS", str(workers))
        .replace("HTTP", "null" if http is None else f'"127.0.0.1:{http}"')
        .replace("RATE", rate_limit)
    )
    if probed:
        members = "\n".join(
            f"      - {{address: 127.1.{i // 250}.{1 + i % 250}, dc: {('par', 'ams')[i % 2]}, "
            f"check_address: 127.0.0.1, check_port: {base_port + i}}}"
            for i in range(probed)
        )
        pool = f"  probed:\n    check: {check}\n    policy: failover\n    datacenters: [par, ams]\n"
        config = config.replace("pools:\n", f"pools:\n{pool}    members:\n{members}\n", 1)
    (root / "geodns.yaml").write_text(config)
    return root / "geodns.yaml"


def median(values: list[float]) -> float:
    return statistics.median(values)


def max_qps(
    server: Server, queries: Path, args: argparse.Namespace, extra: list[str], fresh: bool = False
) -> float:
    """Closed-loop q/s; `fresh`: every run meets an empty answer cache (streams of new queries)."""
    runs = []
    for _ in range(args.runs):
        if fresh:
            server.forget()
        runs.append(dnsperf(server.port, queries, args.seconds, extra).qps)
    return median(runs)


def cost(
    server: Server, queries: Path, args: argparse.Namespace, extra: list[str], fresh: bool = False
) -> Cost:
    """Each figure the median of --runs runs."""
    runs = []
    for _ in range(args.runs):
        if fresh:
            server.forget()
        runs.append(cpu_per_query(server, queries, args.rate, args.seconds, extra))
    return Cost(
        median([r.us_per_query for r in runs]),
        median([r.answered for r in runs]),
        median([r.client_us for r in runs]),
        median([r.latency_ms for r in runs]),
    )


def start_all(root: Path, config: Path, references: list[str]) -> list[Server]:
    servers = [start_geodns(root)]
    try:
        servers += [start_reference(ref, root, config) for ref in references]
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def table(
    title: str,
    servers: list[Server],
    rows: dict[str, tuple[Path, list[str]]],
    args: argparse.Namespace,
    fresh: bool = False,
) -> dict[str, dict[str, Cost]]:
    """Per row: each server's max q/s and CPU per answered query at --rate, and
    geodns's CPU per query as a multiple of the cheapest C server's. Returns each
    row's costs by server."""
    print(f"\n{title}")
    head = f"| {'stream':<28} |"
    for s in servers:
        head += f" {s.name} q/s | {s.name} us/q |"
    print(head + " geodns / best C |")
    print("|" + "---|" * (2 * len(servers) + 2))
    measured: dict[str, dict[str, Cost]] = {}
    for label, (queries, extra) in rows.items():
        line = f"| {label:<28} |"
        costs = measured[label] = {}
        for server in servers:
            qps = max_qps(server, queries, args, extra, fresh)
            costs[server.name] = spent = cost(server, queries, args, extra, fresh)
            flag = "" if spent.answered > 0.99 else f" ({spent.answered:.0%} answered)"
            line += f" {qps:>10,.0f} | {spent.us_per_query:>6.1f}{flag} |"
        c = [v.us_per_query for k, v in costs.items() if k in C_SERVERS]
        line += f" {costs['geodns'].us_per_query / min(c):.2f}x |" if c else " - |"
        print(line, flush=True)
    return measured


def delivery_table(costs: dict[str, Cost]) -> None:
    """Who pays for a TCP reply's delivery. Over loopback the sender's CPU runs the
    receiver's TCP input. A server that holds a small reply behind Nagle until the
    client's next segment acknowledges the last one has it sent, and delivered, on
    the client's CPU: its own CPU per query looks lower and its latency is higher.
    Server + client CPU compares the work each design costs."""
    print("\nTCP: who pays for delivering the replies (same runs as the row above)")
    print("| server | server us/q | dnsperf us/q | server + dnsperf us/q | mean latency ms |")
    print("|---|---|---|---|---|")
    for name, c in costs.items():
        both = c.us_per_query + c.client_us
        print(f"| {name} | {c.us_per_query:.1f} | {c.client_us:.1f} | {both:.1f} | {c.latency_ms:.3f} |")
    ours = costs["geodns"]
    refs = {k: v for k, v in costs.items() if k in C_SERVERS}
    if not refs:
        return
    both = min(v.us_per_query + v.client_us for v in refs.values())
    print(f"geodns server + dnsperf / best C: {(ours.us_per_query + ours.client_us) / both:.2f}x")
    # "At once": a mean latency within twice geodns's; Nagle-held replies wait for the
    # client's next query (hundreds of microseconds at these rates).
    prompt = [v.us_per_query for v in refs.values() if v.latency_ms <= 2 * ours.latency_ms]
    if prompt:
        print(f"geodns server only / best C answering at once: {ours.us_per_query / min(prompt):.2f}x")


def section_hits(root: Path, args: argparse.Namespace, references: list[str]) -> None:
    (root / "hits").mkdir()
    config = make_config(root / "hits", 10)
    rows = {
        "static A": (query_file(root, "static", ["www.example.test A"]), []),
        "pool A (failover)": (query_file(root, "fo", ["fo.example.test A"]), []),
        "pool A (weighted)": (query_file(root, "wt", ["wt.example.test A"]), []),
        "NXDOMAIN (1,000 names)": (
            query_file(root, "nx", [f"nx{i}.example.test A" for i in range(1000)]),
            [],
        ),
        "ECS, geo pool (1 subnet)": (query_file(root, "ecs", ["geo.example.test A"]), ["-E", ECS_OPTION]),
        "static A over TCP": (query_file(root, "static", ["www.example.test A"]), ["-m", "tcp"]),
    }
    servers = start_all(root / "hits", config, references)
    try:
        title = f"Cache hits (a good day); CPU per query at {args.rate:,} q/s offered"
        measured = table(title, servers, rows, args)
        delivery_table(measured["static A over TCP"])
        p99 = ", ".join(
            f"{s.name} {p99_under_load(s.port, rows['static A'][0], args.seconds):.3f} ms" for s in servers
        )
        print(f"\np99 of a probe stream under 20,000 q/s: {p99}")
    finally:
        for server in servers:
            server.stop()


def section_misses(root: Path, args: argparse.Namespace, references: list[str]) -> None:
    """Every query a new one. -n 1: each file is sent once, never cycled."""
    count = int(args.rate * args.seconds * 1.5) + 200_000
    rng = random.Random(7)
    once = ["-n", "1"]
    small = root / "misses"
    small.mkdir()
    config = make_config(small, 10)
    rows = {
        "unique NXDOMAIN": (
            query_file(
                small, "nx-unique", [f"r{rng.getrandbits(60):x}.example.test A" for _ in range(count)]
            ),
            once,
        ),
        "new ECS /24 per query (geo)": (wire_file(small, "ecs-unique", unique_ecs(count)), ["-B", *once]),
        "same query in lower case (0x20's reference)": (
            wire_file(small, "lower", [wire_query("www.example.test")] * count),
            ["-B", *once],
        ),
        "0x20: new case per query": (
            wire_file(small, "case", random_case("www.example.test", count)),
            ["-B", *once],
        ),
    }
    servers = start_all(small, config, references)
    try:
        title = f"Misses (a bad day): every query new; CPU per query at {args.rate:,} q/s offered"
        table(title, servers, rows, args, fresh=True)
    finally:
        for server in servers:
            server.stop()
    big = root / "big"
    big.mkdir()
    config = make_config(big, BIG)
    names = [f"h{i}.example.test A" for i in range(BIG)]
    rng.shuffle(names)
    walk = {f"{BIG:,}-record zone, each name once": (query_file(big, "walk", names), once)}
    servers = start_all(big, config, references)
    try:
        table("", servers, walk, args, fresh=True)
    finally:
        for server in servers:
            server.stop()


# Backends whose health flips every second (phase spread by port), or never.
FLAPPING = r"""
import asyncio, os, sys, time, uvloop
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
BAD = b"HTTP/1.1 503 No\r\nContent-Length: 2\r\nConnection: close\r\n\r\nNO"
def make(i, flap):
    class P(asyncio.Protocol):
        def connection_made(self, t): self.t = t
        def data_received(self, d):
            if b"\r\n\r\n" in d:
                bad = flap and int(time.time() + i / 50) % 2
                self.t.write(BAD if bad else OK); self.t.close()
    return P
async def main(base, n, flapping, seconds):
    loop = asyncio.get_running_loop()
    for i in range(n):
        await loop.create_server(make(i, i < flapping), "127.0.0.1", base + i, backlog=64)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
os.sched_setaffinity(0, {1})
uvloop.run(main(*map(int, sys.argv[1:4]), float(sys.argv[4])))
"""


def section_flap(root: Path, args: argparse.Namespace) -> None:
    members = 200
    mix = query_file(
        root,
        "flapmix",
        ["www.example.test A", "www.example.test A", "fo.example.test A", "probed.example.test A"],
    )
    print(
        f"\nFlap storm: {members} members probed 5 times a second;"
        " q/s (static/pool mix) and p99 under 20,000 q/s"
    )
    print("| members changing state every second | q/s | vs stable | p99 ms | snapshots/s |")
    print("|---|---|---|---|---|")
    base = 24000
    stable_qps = 0.0
    for flapping in (0, 10, members):
        backend = subprocess.Popen(
            [sys.executable, "-c", FLAPPING, str(base), str(members), str(flapping), "3600"],
            stdout=subprocess.PIPE,
            text=True,
        )
        case = root / f"flap-{flapping}"
        case.mkdir()
        # Below the ephemeral range: a thousand probe connections a second (and those of
        # the case before, in TIME_WAIT) took free_port()'s pick as their source port once,
        # and the API could not bind it.
        http = base - 1
        make_config(case, 10, members, base, check="flappy", http=http)
        try:
            assert backend.stdout is not None and backend.stdout.readline().strip() == "ready"
            server = start_geodns(case)
            try:
                time.sleep(3)
                before = _metric(http, "geodns_snapshot_version")
                t0 = time.perf_counter()
                qps = max_qps(server, mix, args, [])
                p99 = p99_under_load(server.port, mix, args.seconds)
                rate = (_metric(http, "geodns_snapshot_version") - before) / (time.perf_counter() - t0)
            finally:
                server.stop()
        finally:
            backend.kill()
            backend.wait()
        stable_qps = stable_qps or qps
        label = "none (stable)" if flapping == 0 else str(flapping)
        print(f"| {label} | {qps:,.0f} | {qps / stable_qps:.2f}x | {p99:.2f} | {rate:.1f} |", flush=True)


def _metric(port: int, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def section_workers(root: Path, args: argparse.Namespace) -> None:
    """Workers 1 vs 2, each worker offered --rate (so per-query costs compare at the
    same load per process), the kernel's split of the queries, and how long a
    drain takes to be in every worker's answers."""
    rng = random.Random(9)
    count = int(2 * args.rate * args.seconds * 1.2) + 1000
    rows = {
        "static A (cache hits)": (query_file(root, "w-static", ["www.example.test A"]), [], False),
        "unique NXDOMAIN": (
            query_file(root, "w-nx", [f"w{rng.getrandbits(60):x}.example.test A" for _ in range(count)]),
            ["-n", "1"],
            True,
        ),
    }
    print(f"\nDNS workers: CPU per query with {args.rate:,} q/s offered per worker, load split, drains")
    print("| workers | stream | us/q | split (queries per worker) | drain in every worker's answers, ms |")
    print("|---|---|---|---|---|")
    for workers, cpus in ((1, "0"), (2, "0,1")):
        case = root / f"workers-{workers}"
        case.mkdir()
        http = free_port()
        make_config(case, 10, workers=workers, http=http)
        server = start_geodns(case, cpus)
        per_worker = argparse.Namespace(**{**vars(args), "rate": args.rate * workers})
        try:
            drains = _drain_times(http, 10)
            for label, (queries, extra, fresh) in rows.items():
                spent = cost(server, queries, per_worker, extra, fresh)
                before = _per_worker(http)
                # The split from 64 client sockets: the kernel hashes each flow to one worker,
                # and dnsperf's usual 8 flows are too few to show how many resolvers spread
                # (they split 5/3 in some runs, a property of 8 draws, not of the workers).
                cpu_per_query(
                    server, rows["static A (cache hits)"][0], per_worker.rate, args.seconds, ["-c", "64"]
                )
                time.sleep(1.2)  # the workers' counters arrive twice a second
                after = _per_worker(http)
                shares = [after[w] - before.get(w, 0) for w in sorted(after)] or [1.0]
                split = "/".join(f"{100 * s / max(1.0, sum(shares)):.0f}%" for s in shares)
                note = "" if spent.answered > 0.99 else f" ({spent.answered:.0%} answered)"
                us, drain = spent.us_per_query, median(drains)
                print(f"| {workers} | {label} | {us:.1f}{note} | {split} | {drain:.1f} |", flush=True)
        finally:
            server.stop()


RATE_LIMITS = {
    "off (rate_limit: false)": "false",
    "default (loopback exempt)": "{}",
    "on, every network under the rate": "{responses_per_second: 1000000, exempt: []}",
    "on, over the rate: every reply counted": "{responses_per_second: 5000, exempt: []}",
    "on, a flood: most replies dropped": "{responses_per_second: 200, exempt: []}",
}


def section_ratelimit(root: Path, args: argparse.Namespace) -> None:
    """What response rate limiting costs: cache hits for 1,000 names from one
    source (dnsperf), with the limiter off, exempting loopback (the default), on
    with every network under the rate (the common case: one counter per reply),
    on with the source over the per-network rate so every reply is classified and
    charged (a busy resolver; each name stays under its own rate), and a flood of
    one name where all but 200/s are dropped or slipped."""
    names = query_file(root, "rrl-names", [f"h{i}.example.test A" for i in range(1000)])
    flood = query_file(root, "rrl-flood", ["www.example.test A"])
    print(f"\nResponse rate limiting: cache hits; CPU per query at {args.rate:,} q/s offered")
    print("| rate_limit | stream | q/s | vs off | us per query received | answered in full |")
    print("|---|---|---|---|---|---|")
    reference = 0.0
    for index, (label, setting) in enumerate(RATE_LIMITS.items()):
        case = root / f"rrl-{index}"
        case.mkdir()
        make_config(case, 1000, rate_limit=setting)
        queries = flood if "flood" in label else names
        server = start_geodns(case)
        try:
            # Closed-loop q/s means nothing when replies are withheld: the flood row
            # gives only the CPU per query received.
            qps = max_qps(server, queries, args, []) if queries is names else 0.0
            spent = cost(server, queries, args, [])
        finally:
            server.stop()
        reference = reference or qps
        speed = f"{qps:,.0f} | {qps / reference:.2f}x" if qps else "- | -"
        stream = "1,000 names" if qps else "one name"
        received = spent.us_per_query * spent.answered
        print(f"| {label} | {stream} | {speed} | {received:.1f} | {spent.answered:.0%} |", flush=True)


def section_geoip(root: Path, args: argparse.Namespace) -> None:
    """GeoIP steering on the hot path: ECS queries from 100,000 distinct /24s to a
    geo pool steered by a country database (a /8 per country, with nested /16s of
    other countries) and a nearest default, against the static A rate in the same
    run; and what one lookup costs (database read and rule choice) without the cache."""
    from geodns.config import load  # noqa: PLC0415
    from geodns.serving import geo_lookup  # noqa: PLC0415
    from geodns.steering.geochoice import geo_choice  # noqa: PLC0415
    from tests.geoipdb import city, write  # noqa: PLC0415 - mmdb-writer: the test tooling

    case = root / "geoip"
    case.mkdir()
    countries = [
        ("FR", "EU", 46.0, 2.0),
        ("DE", "EU", 51.0, 10.0),
        ("GB", "EU", 54.0, -2.0),
        ("US", "NA", 38.0, -97.0),
        ("BR", "SA", -10.0, -55.0),
        ("JP", "AS", 36.0, 138.0),
        ("AU", "OC", -25.0, 133.0),
        ("ZA", "AF", -29.0, 24.0),
        ("IN", "AS", 21.0, 78.0),
    ]
    networks = {}
    for first in range(1, 224):
        code, continent, lat, lon = countries[first % len(countries)]
        networks[f"{first}.0.0.0/8"] = city(code, continent, lat, lon)
        other = countries[(first * 7) % len(countries)]
        networks[f"{first}.{first}.0.0/16"] = city(other[0], other[1], other[2], other[3])
    write(case / "geo.mmdb", networks)
    make_config(case, 10)
    text = (case / "geodns.yaml").read_text()
    text = text.replace(
        "datacenters: {par: {}, ams: {}}",
        "datacenters: {par: {location: {lat: 48.86, lon: 2.35}}, ams: {location: {lat: 52.37, lon: 4.90}}}",
    )
    text = text.replace("topology:\n", "geoip: {database: geo.mmdb}\ntopology:\n")
    text += "  - {country: [FR, GB], prefer: [par]}\n  - {continent: EU, prefer: [ams]}\n"
    text += "  - {default: true, prefer: nearest}\n"
    (case / "geodns.yaml").write_text(text)
    subnets = unique_ecs(100_000, seed=11)
    geo = wire_file(case, "geo-ecs", subnets)
    static = wire_file(case, "static", [wire_query("www.example.test")] * 1000)
    # A flood of more distinct subnets than the subnet-key memo holds (262,144), each
    # sent once: every query pays the decision lookup (its network and rule memos only).
    flood = wire_file(case, "geo-flood", unique_ecs(700_000, seed=12))
    server = start_geodns(case)
    try:
        static_qps = max_qps(server, static, args, ["-B"])
        geo_qps = max_qps(server, geo, args, ["-B"])
        flood_qps = max_qps(server, flood, args, ["-B", "-n", "1"], fresh=True)
    finally:
        server.stop()
    config = load(case / "geodns.yaml")
    lookup = geo_lookup(config)
    addresses = [ipaddress.IPv4Address(q[-3:] + b"\0") for q in subnets[:20000]]
    began = time.perf_counter()
    for address in addresses:
        geo_choice(config, address, lookup)
    per_lookup = (time.perf_counter() - began) / len(addresses) * 1e6
    print("\nGeoIP steering: ECS queries from 100,000 distinct /24s (closed loop, one core)")
    print("| stream | q/s | vs static A |")
    print("|---|---|---|")
    print(f"| static A, one name | {static_qps:,.0f} | 1.00x |")
    ratio = geo_qps / static_qps
    print(f"| geo pool, a new ECS /24 per query (100,000 of them) | {geo_qps:,.0f} | {ratio:.2f}x |")
    flood_ratio = flood_qps / static_qps
    print(f"| geo pool, 700,000 distinct /24s each sent once | {flood_qps:,.0f} | {flood_ratio:.2f}x |")
    print(f"database lookup and rule choice, uncached: {per_lookup:.1f} us per query", flush=True)


def _metrics_text(http: int) -> str:
    deadline = time.monotonic() + 20
    while True:  # DNS answers a moment before the HTTP API listens (start-up, restarts)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _per_worker(http: int) -> dict[str, float]:
    text = _metrics_text(http)
    out = {}
    for line in text.splitlines():
        if line.startswith('geodns_dns_worker_queries_total{worker="'):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    if not out:  # one process: its own total
        out["1"] = _metric(http, "geodns_dns_queries_total")
    return out


def _drain_times(http: int, count: int) -> list[float]:
    """Milliseconds from a drain's request to its response, which comes once every
    DNS worker answers with it."""
    _metrics_text(http)  # listening
    times = []
    for i in range(count):
        body = json.dumps({"target": "dc=par", "state": "down" if i % 2 == 0 else "up", "reason": "bench"})
        request = urllib.request.Request(
            f"http://127.0.0.1:{http}/v1/overrides", body.encode(), {"Content-Type": "application/json"}
        )
        t0 = time.perf_counter()
        with urllib.request.urlopen(request, timeout=5) as response:
            assert "warning" not in json.loads(response.read())
        times.append((time.perf_counter() - t0) * 1000)
    return times


def section_growth(root: Path, args: argparse.Namespace) -> None:
    print("\nCost growth (geodns, one worker; q/s over 1,000 random names of the zone)")
    print("| records | first start | memory after it (MB PSS) | restart | memory after it | q/s |")
    print("|---|---|---|---|---|---|")
    for n in (int(x) for x in args.growth.split(",")):
        case = root / f"growth-{n}"
        case.mkdir()
        make_config(case, n)
        server = start_geodns(case)
        try:
            rng = random.Random(n)
            queries = query_file(
                case, "growth", [f"h{rng.randrange(max(1, n))}.example.test A" for _ in range(1000)]
            )
            qps = max_qps(server, queries, args, [])
            memory = server.memory_mb()
        finally:
            server.stop()
        again = start_geodns(case)  # a restart finds the compiled zone in state_dir/zonecache
        again_memory = again.memory_mb()
        again.stop()
        print(
            f"| {n:,} | {server.startup:.2f} s | {memory:.0f} | {again.startup:.2f} s | {again_memory:.0f} "
            f"| {qps:,.0f} |",
            flush=True,
        )


def section_probes(root: Path, args: argparse.Namespace, probed: int = 1000, base_port: int = 21000) -> None:
    """Static-A q/s with and without `probed` HTTP checks every 2 s (500 probes/s)."""
    backend = subprocess.Popen(
        [sys.executable, "-c", BACKEND, str(base_port), str(probed), "600"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert backend.stdout is not None and backend.stdout.readline().strip() == "ready"
        static = query_file(root, "static", ["www.example.test A"])
        results = {}
        for label, count in (("idle", 0), (f"{probed} HTTP checks every 2 s", probed)):
            case = root / f"probe-{count}"
            case.mkdir()
            make_config(case, 10, count, base_port)
            server = start_geodns(case)
            try:
                time.sleep(3)  # past the start-up burst of probes
                results[label] = max_qps(server, static, args, [])
            finally:
                server.stop()
        print()
        for label, qps in results.items():
            print(f"static A q/s, {label:<26} {qps:>9,.0f}  ({qps / results['idle']:.2f} of idle)")
    finally:
        backend.kill()
        backend.wait()


def machine() -> str:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    said = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True, check=False)
    dnsperf_version = said.stdout + said.stderr
    version = next((line for line in dnsperf_version.splitlines() if line.startswith("Version")), "")
    dnsperf = version.split()[-1] if version else "?"
    return (
        f"{model}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, dnsperf {dnsperf}"
    )


SECTIONS: dict[str, Callable[[Path, argparse.Namespace, list[str]], None]] = {
    "hits": section_hits,
    "misses": section_misses,
    "flap": lambda root, args, _refs: section_flap(root, args),
    "workers": lambda root, args, _refs: section_workers(root, args),
    "growth": lambda root, args, _refs: section_growth(root, args),
    "probes": lambda root, args, _refs: section_probes(root, args),
    "ratelimit": lambda root, args, _refs: section_ratelimit(root, args),
    "geoip": lambda root, args, _refs: section_geoip(root, args),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--section", default=",".join(SECTIONS), help=f"comma-separated: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=20000, help="offered q/s for the CPU-per-query figures")
    parser.add_argument(
        "--reference", default="gdnsd,knot,nsd", help="comma-separated: gdnsd, knot, nsd, pdns"
    )
    parser.add_argument("--growth", default="10,10000,100000,1000000")
    args = parser.parse_args()
    references = [r for r in args.reference.split(",") if r]
    tools = {
        "gdnsd": "gdnsd",
        "knot": "knotd",
        "nsd": "nsd",
        "pdns": "pdns_server",
        "pdns-lua": "pdns_server",
    }
    for needed in ("dnsperf", "taskset", *(tools[r] for r in references)):
        if shutil.which(needed) is None:
            sys.exit(
                f"{needed} is missing: apt-get install dnsperf gdnsd knot nsd pdns-server pdns-backend-bind"
            )
    print(f"machine: {machine()}")
    print(f"servers on core 0, dnsperf on core 1; medians of {args.runs} x {args.seconds:g} s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.section.split(","):
            root = Path(tmp) / name
            root.mkdir()
            SECTIONS[name](root, args, references)


if __name__ == "__main__":
    main()
