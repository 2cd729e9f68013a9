"""The bad day, measured: what one hostile query, a huge pool or a flood costs.

Sections (all by default):
- block: the worst single query for pools of 10, 100 and 1,000 members: the time
  the event loop is held by one cache miss (fresh serving state, so even the
  pool decision is computed), per policy and transport, with and without
  truncation, next to a static name's miss measured in the same run;
- memory: the answer cache's bytes per 100,000 entries as accounted and as
  measured (tracemalloc), and resident memory of the process.

Every loop is bounded; nothing leaves the process.

    python bench/abuse.py [--section block,memory] [--repeat 30]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import dns.edns  # noqa: E402
import dns.message  # noqa: E402

from bench.common import write_zone  # noqa: E402
from geodns.config import Config, load  # noqa: E402
from geodns.daemon import serving_state  # noqa: E402
from geodns.dns.fastcache import AnswerCache  # noqa: E402
from geodns.dns.fastpath import answer  # noqa: E402
from geodns.dns.handler import ServingState, Stats  # noqa: E402
from geodns.health.health import Health, Status, probe_keys  # noqa: E402
from geodns.health.snapshot import HealthSnapshot  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--section", default="block,memory")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    sections = args.section.split(",")
    if "block" in sections:
        block(args.repeat)
    if "memory" in sections:
        memory(args.entries)


if __name__ == "__main__":
    main()
