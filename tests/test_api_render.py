"""/metrics and /v1/status rendered in steps: the same bytes as in one piece,
never a long hold on the answer loop, one rendering shared by concurrent readers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from geodns.api.render import Rendered, drive, joined, metrics_steps
from geodns.api.status import status_document, status_steps
from geodns.config import load
from geodns.daemon import Daemon
from geodns.health.health import Health, Status
from tests.configs import write_zone

MEMBERS = 2000


@pytest.fixture
def big(tmp_path: Path) -> Daemon:
    members = ", ".join(
        f"{{address: 10.1.{i // 250}.{i % 250 + 1}, dc: {('par', 'ams')[i % 2]}}}" for i in range(MEMBERS)
    )
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    (tmp_path / "geodns.yaml").write_text(
        'server: {state_dir: state, dns_listen: ["127.0.0.1:0"], http_listen: null}\n'
        "datacenters: {par: {}, ams: {}}\n"
        "checks: {web: {type: tcp, port: 9, interval: 60s, timeout: 1s}}\n"
        f"pools:\n  web: {{check: web, members: [{members}]}}\n"
    )
    daemon = Daemon(load(tmp_path / "geodns.yaml"))
    for i, key in enumerate(daemon.monitor.states):
        daemon.monitor.states[key] = Health(
            Status.UP if i % 3 else Status.DOWN, since=1.0, checked=2.0, latency=0.002
        )
    for target in daemon.monitor.targets.values():
        for pool, member in target.members:
            daemon.metrics_registry.member_up.labels(pool.name, member.address, member.dc).set(1)
            daemon.metrics_registry.state_changes.labels(pool.name, member.address, "up").inc()
    return daemon


def _steady(text: bytes) -> bytes:
    return b"\n".join(line for line in text.split(b"\n") if not line.startswith(b"process_"))


def _steps_of(gen: object) -> int:
    count = 0
    it = iter(gen)  # type: ignore[call-overload]
    while True:
        try:
            next(it)
            count += 1
        except StopIteration:
            return count


def test_metrics_in_steps_are_the_same_bytes(big: Daemon) -> None:
    registry = big.metrics_registry.registry
    whole = generate_latest(registry)
    steps = metrics_steps(registry)
    # The process figures (CPU seconds, RSS) are read at each rendering, so they may
    # move between the two; every other byte must be the same.
    assert _steady(asyncio.run(drive(steps))) == _steady(whole)
    assert b"process_resident_memory_bytes " in whole
    # ~4,000 labelled samples: dozens of steps, none holding more than 50 samples.
    assert _steps_of(metrics_steps(registry)) > 2 * MEMBERS / 50
    assert b"_created" not in whole  # no _created series


def test_status_in_steps_is_the_same_document(big: Daemon) -> None:
    snapshot = big.store.current()
    live = dict(big.monitor.states)
    whole = status_document(big.config, snapshot, live, True)
    body = asyncio.run(drive(joined(status_steps(big.config, snapshot, live, True))))
    assert json.loads(body) == whole
    assert (
        _steps_of(status_steps(big.config, snapshot, live, True)) > MEMBERS
    )  # one piece per member at least


@pytest.mark.asyncio
async def test_concurrent_readers_share_one_rendering(big: Daemon) -> None:
    renders = 0

    def counted() -> object:
        nonlocal renders
        renders += 1
        return metrics_steps(big.metrics_registry.registry)

    cache = Rendered(counted, lambda: 1, ttl=10.0)  # type: ignore[arg-type]
    bodies = await asyncio.gather(*(cache.get() for _ in range(20)))
    assert renders == 1 and len(set(bodies)) == 1
    assert await cache.get() == bodies[0] and renders == 1


@pytest.mark.asyncio
async def test_rendering_lets_the_loop_run_between_steps(big: Daemon) -> None:
    """While /metrics for 2,000 members is rendered, a task wanting the loop every
    turn gets it hundreds of times (in one piece it would get it once)."""
    turns = 0
    done = False

    async def other() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    await big.metrics_text()
    await big.status_json()
    done = True
    await task
    assert turns > 20


@pytest.mark.asyncio
async def test_gzipped_documents_are_the_same_documents(big: Daemon) -> None:
    import gzip

    status, metrics = await big.status_json(), await big.metrics_text()
    packed_status, packed_metrics = await big.status_json(gzipped=True), await big.metrics_text(gzipped=True)
    assert gzip.decompress(packed_status) == status and gzip.decompress(packed_metrics) == metrics
    assert len(packed_status) * 5 < len(status)  # what goes through the socket is a fraction
