"""Load for the DNS benchmarks: dnsperf pinned to its own core, query files
(text, or raw wire messages for what text cannot say: a new ECS subnet or a new
letter case per query), and the measures taken with it."""

from __future__ import annotations

import random
import re
import resource
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.servers import Server

LOAD_CPU = "1"  # dnsperf's core; servers get core 0


def dnsperf_cmd(port: int, queries: Path, seconds: float, *extra: str) -> list[str]:
    return [
        "taskset", "-c", LOAD_CPU, "dnsperf", "-s", "127.0.0.1", "-p", str(port),
        "-d", str(queries), "-l", str(seconds), *extra,
    ]  # fmt: skip


@dataclass
class Run:
    qps: float
    avg_ms: float
    sent: int
    completed: int


def dnsperf(port: int, queries: Path, seconds: float, extra: list[str]) -> Run:
    """As fast as the server answers (8 clients, 200 in flight)."""
    out = subprocess.run(
        dnsperf_cmd(port, queries, seconds, "-c", "8", "-q", "200", *extra),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    ).stdout
    return _parsed(out)


def _parsed(out: str) -> Run:
    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found[1]) if found else 0.0

    return Run(
        qps=number(r"Queries per second:\s+([\d.]+)"),
        avg_ms=number(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        sent=int(number(r"Queries sent:\s+(\d+)")),
        completed=int(number(r"Queries completed:\s+(\d+)")),
    )


@dataclass
class Cost:
    us_per_query: float  # server CPU time per answered query
    answered: float  # fraction of queries sent that were answered
    client_us: float = 0.0  # dnsperf's CPU time per answered query
    latency_ms: float = 0.0  # dnsperf's mean latency


def cpu_per_query(server: Server, queries: Path, rate: int, seconds: float, extra: list[str]) -> Cost:
    """Server CPU per answered query at a fixed offered rate: the fair measure when
    one dnsperf cannot saturate a C server (and the one that shows what a miss costs).
    dnsperf's own CPU is kept too: over loopback the sender's CPU runs the receiver's
    TCP input, so a server that holds its replies until the client's next segment has
    them delivered on the client's CPU (see the hits section's TCP table)."""
    client_before = _children_cpu()
    before = server.cpu_seconds()
    out = subprocess.run(
        dnsperf_cmd(server.port, queries, seconds, "-Q", str(rate), "-c", "8", "-q", "2000", *extra),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    ).stdout
    used = server.cpu_seconds() - before
    # The bench runs one child at a time, so the children's CPU grew by dnsperf's alone.
    client = _children_cpu() - client_before
    run = _parsed(out)
    done = max(1, run.completed)
    return Cost(used / done * 1e6, run.completed / max(1, run.sent), client / done * 1e6, run.avg_ms)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def p99_under_load(port: int, queries: Path, seconds: float, extra: list[str] | None = None) -> float:
    """p99 of a light probe stream (www A, every 2 ms) while dnsperf holds 20,000 q/s."""
    load_proc = subprocess.Popen(
        dnsperf_cmd(port, queries, seconds, "-Q", "20000", "-c", "4", *(extra or [])),
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


def _wire_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"


def wire_query(name: str, qtype: int = 1, ecs: bytes | None = None) -> bytes:
    """A query with EDNS (1232); `ecs` is an ECS option's data (family, prefixes, address)."""
    options = b"" if ecs is None else struct.pack("!HH", 8, len(ecs)) + ecs
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return (
        struct.pack("!HHHHHH", 0, 0x0100, 1, 0, 0, 1) + _wire_name(name) + struct.pack("!HH", qtype, 1) + opt
    )


def wire_file(root: Path, name: str, queries: list[bytes]) -> Path:
    """dnsperf's binary input (-B): each message after its 2-byte length."""
    path = root / f"{name}.bin"
    path.write_bytes(b"".join(struct.pack("!H", len(q)) + q for q in queries))
    return path


def unique_ecs(count: int, seed: int = 1) -> list[bytes]:
    """geo.example.test A, each with an ECS /24 never sent before."""
    rng = random.Random(seed)
    subnets = rng.sample(range(1 << 24), count)
    return [
        wire_query("geo.example.test", 1, struct.pack("!HBB", 1, 24, 0) + s.to_bytes(3, "big"))
        for s in subnets
    ]


def random_case(name: str, count: int, seed: int = 2) -> list[bytes]:
    """`name` with its letters' case drawn anew for each query (what 0x20 resolvers send)."""
    rng = random.Random(seed)
    return [wire_query("".join(c.upper() if rng.random() < 0.5 else c for c in name)) for _ in range(count)]
