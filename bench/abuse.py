"""The bad day, measured: what one hostile query, a huge pool or a flood costs.

Sections (all by default):
- attacks: a legitimate client asks 2,000 q/s of a static name while each attack
  of the load-hardening issue runs (a daemon of its own per case, pinned to core 0;
  clients and attackers on core 1); its p50/p99/loss beside a quiet run of the same
  invocation, the daemon's worst event-loop stall, resident memory and false state
  changes (members that are healthy but were marked down);
- block: the worst single query for pools of 10, 100 and 1,000 members: the time
  the event loop is held by one cache miss (fresh serving state, so even the
  pool decision is computed), per policy and transport, with and without
  truncation, next to a static name's miss measured in the same run;
- memory: the answer cache's bytes per 100,000 entries as accounted and as
  measured (tracemalloc), and resident memory of the process.

Every loop is bounded; nothing leaves the process.

    python bench/abuse.py [--section attacks,block,memory] [--seconds 5] [--repeat 30]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import dns.edns  # noqa: E402
import dns.message  # noqa: E402

from bench.common import BACKEND, DNS_CLIENT, free_port, write_zone  # noqa: E402
from geodns.config import Config, load  # noqa: E402
from geodns.dns.fastcache import AnswerCache  # noqa: E402
from geodns.dns.fastpath import answer  # noqa: E402
from geodns.dns.handler import ServingState, Stats  # noqa: E402
from geodns.health.health import Health, Status, probe_keys  # noqa: E402
from geodns.health.snapshot import HealthSnapshot  # noqa: E402
from geodns.serving import serving_state  # noqa: E402

LEGIT_RATE = 2000
SIZES = (10, 100, 1000)
POLICIES = ("all", "weighted", "failover")


def _config(folder: Path) -> Config:
    pools, records = [], []
    for size in SIZES:
        for policy in POLICIES:
            name = f"{policy}{size}"
            members = ", ".join(
                f"{{address: 10.{i // 250}.{i % 250}.{size % 250}, dc: {('par', 'ams')[i % 2]}}}"
                for i in range(size)
            )
            extra = "    max_answers: 8\n" if policy == "weighted" else ""
            pools.append(
                f"  {name}:\n    policy: {policy}\n    check: web\n{extra}"
                f"    datacenters: [par, ams]\n    members: [{members}]\n"
            )
            records.append(f"  {name}: {{type: A, pool: {name}}}\n")
    (folder / "geodns.yaml").write_text(
        "server: {state_dir: state}\ndatacenters: {par: {}, ams: {}}\n"
        "checks: {web: {type: tcp, port: 9, interval: 2s, timeout: 1s}}\n"
        "pools:\n" + "".join(pools)
    )
    write_zone(folder, "  static: {type: A, value: 192.0.2.1}\n" + "".join(records))
    return load(folder / "geodns.yaml")


def _all_up(config: Config) -> HealthSnapshot:
    return HealthSnapshot(1, {key: Health(status=Status.UP) for key in probe_keys(config)})


def _query(name: str, variant: str, i: int) -> tuple[bytes, bool]:
    edns = variant != "udp-512"
    q = dns.message.make_query(f"{name}.example.test.", "A", use_edns=0 if edns else False, payload=1232)
    q.id = i & 0xFFFF
    return q.to_wire(), variant != "tcp"


def _time_miss(config: Config, snapshot: HealthSnapshot, name: str, variant: str, repeat: int) -> list[float]:
    """Each run on a fresh serving state: the query pays for the pool decision too."""
    out = []
    states = [serving_state(config, snapshot) for _ in range(repeat)]
    gc.collect()
    for i, state in enumerate(states):
        wire, udp = _query(name, variant, i)
        start = time.perf_counter()
        reply = answer(wire, "127.0.0.1", udp, state, Stats())
        out.append(time.perf_counter() - start)
        assert reply is not None
    return out


def block(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        snapshot = _all_up(config)
        print("\n## One query's hold on the event loop (a cache miss on a fresh state)\n")
        print(f"median and max of {repeat} runs, milliseconds\n")
        print("| name | members | UDP no EDNS (512) | UDP EDNS 1232 | TCP | answer records (TCP) |")
        print("|---|---|---|---|---|---|")
        rows = [("static", "-", "static")] + [
            (f"{policy}{size}", str(size), f"{policy}{size}") for policy in POLICIES for size in SIZES
        ]
        worst = 0.0
        for label, size, name in rows:
            cells = []
            for variant in ("udp-512", "udp-1232", "tcp"):
                times = _time_miss(config, snapshot, name, variant, repeat)
                worst = max(worst, *times)
                cells.append(f"{statistics.median(times) * 1000:.3f} / {max(times) * 1000:.3f}")
            wire, _ = _query(name, "tcp", 0)
            reply = answer(wire, "127.0.0.1", False, serving_state(config, snapshot), Stats())
            assert reply is not None
            records = len(dns.message.from_wire(reply).answer[0]) if name != "static" else 1
            print(f"| {label} | {size} | {' | '.join(cells)} | {records} |")
        print(f"\nworst single query: {worst * 1000:.2f} ms")


def memory(entries: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp))
        base = serving_state(config, _all_up(config))
        state = ServingState(base.zones, base.pools, base.nsid, base.edns_udp_size, AnswerCache(2**40))
        rng = random.Random(1)
        wires = []
        for i in range(entries):
            label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
            q = dns.message.make_query(f"{label}.example.test.", "A", use_edns=0)
            q.id = i & 0xFFFF
            wires.append(q.to_wire())
        gc.collect()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        snap_before = tracemalloc.take_snapshot()
        stats = Stats()
        for wire in wires:
            answer(wire, "127.0.0.1", True, state, stats)
        gc.collect()
        snap_after = tracemalloc.take_snapshot()
        traced = sum(s.size_diff for s in snap_after.compare_to(snap_before, "filename"))
        tracemalloc.stop()
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cache = state.cache
        print(f"\n## Answer cache memory ({entries:,} NXDOMAIN entries, EDNS)\n")
        print("| entries | accounted (budget units) | allocated (tracemalloc) | max RSS growth | per entry |")
        print("|---|---|---|---|---|")
        per = traced / max(1, cache.entries())
        print(
            f"| {cache.entries():,} | {cache.used / 2**20:.1f} MiB | {traced / 2**20:.1f} MiB |"
            f" {(rss_after - rss_before) / 1024:.1f} MiB | {per:.0f} B |"
        )
        print(f"\naccounted / allocated: {cache.used / max(1, traced):.2f} (>= 1 keeps the budget honest)")
        print(f"default budget 64 MiB holds ~{64 * 2**20 / (cache.used / cache.entries()):,.0f} such entries")


# --- attacks ---------------------------------------------------------------------------

UDP_ATTACK = r"""
import os, random, socket, sys, time
os.sched_setaffinity(0, {1})
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
name, mode = sys.argv[4], sys.argv[5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
def label(l):
    flip = lambda c: c ^ 0x20 if 97 <= c <= 122 and random.getrandbits(1) else c
    return bytes([len(l)]) + bytes(flip(c) for c in l.encode())
def query(i):
    q = (i & 0xFFFF).to_bytes(2, "big") + bytes.fromhex("0000000100000000") + b"\0\1"
    q += b"".join(label(l) for l in name.split(".")) + b"\0\0\1\0\1"
    opts = b""
    if mode == "ecs":
        opts = bytes.fromhex("0008000700011800") + bytes(random.getrandbits(8) for _ in range(3))
    size = random.randrange(512, 1233)
    return q + b"\0\0\x29" + size.to_bytes(2, "big") + b"\0\0\0\0" + len(opts).to_bytes(2, "big") + opts
start = time.perf_counter(); i = 0
while time.perf_counter() - start < seconds:
    due = int((time.perf_counter() - start) * rate)
    while i < due:
        try: s.sendto(query(i), ("127.0.0.1", port))
        except BlockingIOError: pass
        i += 1
    try:
        while True: s.recv(65535)
    except BlockingIOError: pass
    time.sleep(0.002)
print(i)
"""


# `python -c TCP_STARVE PORT SECONDS`: 1,000 slow-loris connections (a framed query a byte a
# second, reconnecting when closed) and 100 that pipeline big queries and never read. At nice
# 19: the measuring clients share core 1 with it and must not wait for the attacker's own CPU.
TCP_STARVE = r"""
import asyncio, os, resource, socket, struct, sys
os.sched_setaffinity(0, {1}); os.nice(19)
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, max(8192, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
port, seconds = int(sys.argv[1]), float(sys.argv[2])
def framed(name, qtype):
    labels = b"".join(bytes([len(l)]) + l.encode() for l in name.split("."))
    q = bytes.fromhex("abcd01000001000000000000") + labels + b"\0" + struct.pack("!HH", qtype, 1)
    return struct.pack("!H", len(q)) + q
www, big = framed("www.example.test", 1), framed("big.example.test", 16)
async def main():
    loop = asyncio.get_running_loop(); end = loop.time() + seconds
    async def loris():
        while loop.time() < end:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                i = 0
                while loop.time() < end and not w.is_closing():
                    w.write(www[i % len(www):i % len(www) + 1]); i += 1; await asyncio.sleep(1.0)
                w.close()
            except OSError:
                await asyncio.sleep(0.1)
    async def non_reader():
        while loop.time() < end:
            try:
                s = socket.socket(); s.setblocking(False)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                await loop.sock_connect(s, ("127.0.0.1", port))
                _, w = await asyncio.open_connection(sock=s)
                while loop.time() < end and not w.is_closing():
                    w.write(big * 50); await asyncio.sleep(0.2)
                w.close()
            except OSError:
                await asyncio.sleep(0.1)
    await asyncio.gather(*(loris() for _ in range(1000)), *(non_reader() for _ in range(100)))
asyncio.run(main())
"""

# `python -c TCP_PROBE PORT SECONDS`: a fresh client connects, asks and reads every 25 ms;
# prints "tries answered p50 p99 max" (seconds).
TCP_PROBE = r"""
import os, socket, struct, sys, time
os.sched_setaffinity(0, {1})
port, seconds = int(sys.argv[1]), float(sys.argv[2])
q = bytes.fromhex("abcd0100000100000000000003777777076578616d706c65047465737400" "00010001")
lat = []; tries = 0; end = time.perf_counter() + seconds
while time.perf_counter() < end:
    tries += 1; t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as c:
            c.sendall(struct.pack("!H", len(q)) + q)
            head = c.recv(2)
            if len(head) == 2:
                n = struct.unpack("!H", head)[0]; got = b""
                while len(got) < n:
                    more = c.recv(n - len(got))
                    if not more: break
                    got += more
                if len(got) == n: lat.append(time.perf_counter() - t0)
    except OSError:
        pass
    time.sleep(0.025)
lat.sort()
pick = lambda p: lat[min(len(lat) - 1, int(len(lat) * p))] if lat else -1
print(tries, len(lat), pick(0.5), pick(0.99), lat[-1] if lat else -1, flush=True)
"""

# `python -c RRL_FLOOD PORT RATE SECONDS`: a forger on 127.0.7.1 asks for the big TXT with
# EDNS 4096; prints "bytes_sent bytes_received full_replies truncated_replies".
RRL_FLOOD = r"""
import os, socket, struct, sys, time
os.sched_setaffinity(0, {1})
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
q = bytes.fromhex("abcd01000001000000000001") + b"\3big\7example\4test\0" + struct.pack("!HH", 16, 1)
q += b"\0\0\x29\x10\0\0\0\0\0\0\0"
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.7.1", 0)); s.setblocking(False)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
start = time.perf_counter(); i = sent = got = full = tc = 0
while time.perf_counter() - start < seconds:
    due = int((time.perf_counter() - start) * rate)
    while i < due:
        try: s.sendto(q, ("127.0.0.1", port)); sent += len(q)
        except BlockingIOError: pass
        i += 1
    try:
        while True:
            data = s.recv(65535); got += len(data)
            if data[2] & 2: tc += 1
            else: full += 1
    except BlockingIOError: pass
    time.sleep(0.002)
print(sent, got, full, tc)
"""


def _members(n: int, base_port: int | None, dcs: tuple[str, ...] = ("par", "ams")) -> str:
    def one(i: int) -> str:
        probe = f", check_address: 127.0.0.1, check_port: {base_port + i}" if base_port is not None else ""
        return f"{{address: 10.{i // 250}.{i % 250}.7, dc: {dcs[i % len(dcs)]}{probe}}}"

    return "[" + ", ".join(one(i) for i in range(n)) + "]"


def _attack_config(
    folder: Path,
    dns_port: int,
    http_port: int,
    *,
    pools: str,
    checks: str = "",
    records: str = "",
    workers: int = 1,
    server: str = "",
) -> Path:
    (folder / "geodns.yaml").write_text(
        f"server: {{dns_listen: ['127.0.0.1:{dns_port}'], http_listen: '127.0.0.1:{http_port}',"
        f" state_dir: state, workers: {workers}{server}}}\n"
        "datacenters: {par: {}, ams: {}}\n"
        f"checks: {{{checks}}}\n"
        f"pools:\n{pools}"
    )
    write_zone(folder, "  www: {type: A, value: 192.0.2.80}\n" + records)
    return folder / "geodns.yaml"


@dataclass
class Case:
    name: str
    what: str
    pools: str = "  none: {members: [{address: 192.0.2.9, dc: par}]}\n"
    checks: str = ""
    records: str = ""
    backends: int = 0  # healthy HTTP backends on consecutive ports
    hostile: int = 0  # members answered by a hostile backend (not counted as false downs)
    fd_limit: int | None = None
    zone_records: int = 0
    server: str = ""  # more `server:` settings, e.g. ", rate_limit: {...}"


BACKEND_BASE = 21000
HOSTILE_PORT = 20999
HOSTILE = r"""
import asyncio, os, sys
os.sched_setaffinity(0, {1})
async def serve(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;")
        end = asyncio.get_running_loop().time() + 2
        while asyncio.get_running_loop().time() < end:
            writer.write(b"a" * 8192); await writer.drain()
    except Exception: pass
    finally: writer.close()
async def main():
    await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True); await asyncio.sleep(float(sys.argv[2]))
asyncio.run(main())
"""


def _hostile_members(n: int) -> str:
    return ", ".join(
        f"{{address: 10.9.0.{i}, dc: ams, check_address: 127.0.0.{i + 2}, check_port: {HOSTILE_PORT}}}"
        for i in range(n)
    )


BIG_TXT = "  big: {type: TXT, values: [" + ", ".join(f'"{c * 250}"' for c in "abcd") + "]}\n"
CHECK = "web: {type: http, path: /health, expect_body: OK, interval: 2s, timeout: 1s}"
CASES = [
    Case("quiet", "nothing but the legitimate client"),
    Case(
        "truncation",
        "2,000 q/s to an `all` pool of 1,000, random case and EDNS size",
        pools=f"  big: {{policy: all, members: {_members(1000, None)}}}\n",
        records="  big: {type: A, pool: big}\n",
    ),
    Case(
        "weighted-ecs",
        "500 q/s to a weighted pool of 100, a random ECS /24 each",
        pools=f"  wt: {{policy: weighted, max_answers: 4, members: {_members(100, None)}}}\n",
        records="  wt: {type: A, pool: wt}\n",
    ),
    Case("reload-100k", "a 100,000-record zone changed and reloaded every 1.5 s", zone_records=100_000),
    Case(
        "api-poll",
        "20 clients polling /metrics and /v1/status every 250 ms, 2,000 members",
        pools=f"  web: {{check: web, members: {_members(2000, BACKEND_BASE)}}}\n",
        checks=CHECK.replace("2s", "10s").replace("1s}", "2s}"),
        backends=2000,
    ),
    Case(
        "hostile-backend",
        "5 members behind an endless chunk-size line, 20 healthy beside them",
        pools=f"  web: {{check: web, members: {_members(20, BACKEND_BASE)}}}\n"
        f"  bad: {{check: web, members: [{_hostile_members(5)}]}}\n",
        checks=CHECK.replace("2s", "500ms").replace("1s}", "400ms}"),
        backends=20,
        hostile=5,
    ),
    Case(
        "idle-api",
        "1,100 idle connections to the API, open-files limit 1,024",
        pools=f"  web: {{check: web, members: {_members(50, BACKEND_BASE)}}}\n",
        checks=CHECK.replace("2s", "500ms").replace("1s}", "400ms}"),
        backends=50,
        fd_limit=1024,
    ),
    Case(
        "tcp-starve",
        "1,000 slow-loris TCP clients (a byte a second) and 100 that pipeline and never read",
    ),
    Case(
        "rrl-flood",
        "20,000 q/s of a 1,100-byte TXT with EDNS from one forged /24 (rate limiting on)",
        records=BIG_TXT,
        server=", rate_limit: {exempt: [127.0.0.1/32]}",  # the client stands for many resolvers
    ),
    Case(
        "overload",
        "2,000 members probed every 100 ms (20,000 probes/s wanted)",
        pools=f"  web: {{check: web, members: {_members(2000, BACKEND_BASE)}}}\n",
        checks=CHECK.replace("2s", "100ms").replace("1s}", "90ms}"),
        backends=2000,
    ),
]


async def _script(script: str, *args: object) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, *map(str, args), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def _attacker(case: Case, folder: Path, dns: int, http: int, pid: int, seconds: float) -> str | None:
    """Runs the case's attack for `seconds`; a line of figures of its own, if any."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    if case.name == "tcp-starve":
        attack = asyncio.ensure_future(_script(TCP_STARVE, dns, seconds))
        await asyncio.sleep(1.0)  # the attackers hold every slot
        tries, answered, *times = (await _script(TCP_PROBE, dns, seconds - 1.5)).split()
        await attack
        p50, p99, worst = (float(t) * 1000 for t in times)
        return (
            f"fresh TCP clients (connect, ask, read) under tcp-starve: {answered}/{tries} answered,"
            f" p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms"
        )
    if case.name == "rrl-flood":
        sent, got, full, slipped = map(int, (await _script(RRL_FLOOD, dns, 20000, seconds)).split())
        return (
            f"rrl-flood: {sent:,} bytes sent by the forger, {got:,} reflected ({got / max(1, sent):.2f}x);"
            f" {full:,} full replies, {slipped:,} truncated (slip)"
        )
    if case.name in ("truncation", "weighted-ecs"):
        name, rate, mode = (
            ("big.example.test", 2000, "case")
            if case.name == "truncation"
            else ("wt.example.test", 500, "ecs")
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            UDP_ATTACK,
            str(dns),
            str(rate),
            str(seconds),
            name,
            mode,
            stdout=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
    elif case.name == "reload-100k":
        zone = folder / "zones" / "z.yaml"
        while loop.time() < end:
            await asyncio.sleep(0.5)
            zone.write_text(zone.read_text() + "\n")
            os.kill(pid, signal.SIGHUP)
            await asyncio.sleep(1.0)
    elif case.name == "api-poll":

        async def poll(path: str) -> None:
            # As a browser or Prometheus asks (gzip), the body read but not unpacked: the
            # pollers share core 1 with the client whose latency is measured.
            async with aiohttp.ClientSession(
                auto_decompress=False, headers={"Accept-Encoding": "gzip"}
            ) as session:
                while loop.time() < end:
                    async with session.get(f"http://127.0.0.1:{http}{path}") as resp:
                        await resp.read()
                    await asyncio.sleep(0.25)  # 80 requests/s in all: a room of status tabs and scrapers

        await asyncio.gather(*(poll("/metrics" if i % 2 else "/v1/status") for i in range(20)))
    elif case.name == "idle-api":
        held = []
        for _ in range(1100):
            try:
                held.append(await asyncio.open_connection("127.0.0.1", http))
            except OSError:
                await asyncio.sleep(0.001)
        await asyncio.sleep(max(0.0, end - loop.time()))
        for _, writer in held:
            writer.close()
    else:
        await asyncio.sleep(seconds)
    return None


def _false_downs(metrics: str, hostile: int) -> int:
    total = 0
    for line in metrics.splitlines():
        if (
            line.startswith("geodns_state_changes_total{")
            and 'to="down"' in line
            and 'pool="bad"' not in line
        ):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def _proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def _run_case(case: Case, seconds: float, workers: int = 1) -> tuple[dict[str, float], str | None]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        dns, http = free_port(), free_port()
        records = case.records
        if case.zone_records:
            records += "".join(
                f"  h{i}: {{type: A, value: 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}}}\n"
                for i in range(case.zone_records)
            )
        config = _attack_config(
            folder,
            dns,
            http,
            pools=case.pools,
            checks=case.checks,
            records=records,
            workers=workers,
            server=case.server,
        )
        helpers = []
        if case.backends:
            helpers.append(
                subprocess.Popen(  # noqa: ASYNC220 - set-up, before anything is measured
                    [sys.executable, "-c", BACKEND, str(BACKEND_BASE), str(case.backends), str(seconds + 60)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        if case.hostile:
            helpers.append(
                subprocess.Popen(  # noqa: ASYNC220
                    [sys.executable, "-c", HOSTILE, str(HOSTILE_PORT), str(seconds + 60)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for helper in helpers:
            assert helper.stdout is not None and helper.stdout.readline().strip() == "ready"

        def limits() -> None:
            # One process: core 0, the attackers and the client on core 1. With DNS workers
            # every core: the main process's probes and API no longer share a loop with answers.
            os.sched_setaffinity(0, {0} if workers == 1 else set(range(os.cpu_count() or 1)))
            if case.fd_limit:
                resource.setrlimit(resource.RLIMIT_NOFILE, (case.fd_limit, case.fd_limit))

        daemon = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "geodns", "--log-level", "error", "serve", "-c", str(config)],
            preexec_fn=limits,  # noqa: PLW1509 - before any thread of the benchmark's own starts
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            async with aiohttp.ClientSession() as session:
                # Up to 20 s: a 100,000-record zone's first start (or never, when overloaded).
                for _ in range(200):
                    if daemon.poll() is not None:
                        raise PortTaken(f"geodns exited with {daemon.returncode} at start")
                    try:
                        async with session.get(f"http://127.0.0.1:{http}/readyz") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                await asyncio.sleep(6.0)  # the loop-lag gauge covers 10 s: leave the start-up burst out of it
                client = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    DNS_CLIENT,
                    str(dns),
                    str(LEGIT_RATE),
                    str(seconds),
                    stdout=asyncio.subprocess.PIPE,
                )
                attack = asyncio.ensure_future(_attacker(case, folder, dns, http, daemon.pid, seconds))
                out, _ = await client.communicate()
                note = await attack
                async with session.get(f"http://127.0.0.1:{http}/metrics") as resp:
                    metrics = await resp.text()
            got, sent, p50, p99 = out.decode().split()
            lag = next(
                (
                    float(line.split()[1])
                    for line in metrics.splitlines()
                    if line.startswith("geodns_event_loop_lag_seconds ")
                ),
                float("nan"),
            )
            return {
                "p50": float(p50) * 1000,
                "p99": float(p99) * 1000,
                "lost": 1 - int(got) / max(1, int(sent)),
                "lag": lag * 1000,
                "rss": _proc_kib(daemon.pid, "VmRSS") / 1024,
                "false_downs": _false_downs(metrics, case.hostile),
            }, note
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            for helper in helpers:
                helper.kill()
                helper.wait()


class PortTaken(Exception):
    """geodns could not start: the free port picked was taken meanwhile (thousands of
    attack connections churn through ephemeral ports)."""


def _run_with_retries(case: Case, seconds: float, workers: int) -> tuple[dict[str, float], str | None]:
    for attempt in range(3):
        try:
            return asyncio.run(_run_case(case, seconds, workers))
        except PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def attacks(seconds: float, runs: int, only: list[str] | None, workers: int = 1) -> None:
    os.sched_setaffinity(0, {1})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print(
        f"\n## Legitimate DNS under each attack ({LEGIT_RATE:,} q/s of a static name, {seconds:g} s,"
        f" median of {runs}, server.workers {workers})\n"
    )
    columns = ("attack", "what", "p50 ms", "p99 ms", "p99 vs quiet", "lost", "worst loop stall ms", "RSS MB")
    print("| " + " | ".join((*columns, "false downs")) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    quiet = None
    notes: list[str] = []
    for case in CASES:
        if only and case.name not in only and case.name != "quiet":
            continue
        outcomes = [_run_with_retries(case, seconds, workers) for _ in range(runs)]
        results = [figures for figures, _ in outcomes]
        notes += [note for _, note in outcomes if note]
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        if case.name == "quiet":
            quiet = med["p99"]
        ratio = med["p99"] / quiet if quiet else float("nan")
        print(
            f"| {case.name} | {case.what} | {med['p50']:.2f} | {med['p99']:.2f} | {ratio:.1f}x |"
            f" {med['lost']:.2%} | {med['lag']:.1f} | {med['rss']:.0f} |"
            f" {max(r['false_downs'] for r in results)} |",
            flush=True,
        )
    for note in notes:
        print(f"\n{note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--section", default="attacks,block,memory")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=1, help="runs per attack; medians are printed")
    parser.add_argument("--only", default="", help="comma-separated attack names (the quiet run always runs)")
    parser.add_argument("--workers", type=int, default=1, help="server.workers (above 1: on every core)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    sections = args.section.split(",")
    if "attacks" in sections:
        attacks(args.seconds, args.runs, [n for n in args.only.split(",") if n] or None, args.workers)
    if "block" in sections:
        block(args.repeat)
    if "memory" in sections:
        memory(args.entries)


if __name__ == "__main__":
    main()
