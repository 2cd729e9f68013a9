"""The blast-radius governor on a running daemon: most members failing at once is
held (answers unchanged, said loudly, in /metrics and `geodns cluster`), and
`geodns release` lets the downs apply."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from geodns.config import load
from geodns.daemon import Daemon
from geodns.health.health import Status
from tests.backends import Behaviour, HttpBackend
from tests.chromium import dump_dom
from tests.configs import write_zone
from tests.conftest import needs
from tests.daemonproc import run_geodns

DCS = ("par", "ams", "nyc", "sin")


def _config(root: Path, ports: dict[str, int]) -> Path:
    write_zone(root, "  www: {type: A, pool: web}\n")
    members = "".join(
        f"      - {{address: 127.0.0.{20 + i}, dc: {dc}, check_port: {ports[dc]}}}\n"
        for i, dc in enumerate(DCS)
    )
    path = root / "geodns.yaml"
    path.write_text(
        "server: {dns_listen: ['127.0.0.1:0'], http_listen: '127.0.0.1:0', state_dir: state, workers: 1}\n"
        "datacenters: {par: {}, ams: {}, nyc: {}, sin: {}}\n"
        "checks: {web: {type: http, interval: 200ms, timeout: 150ms, rise: 1, fall: 1}}\n"
        "pools:\n  web:\n    check: web\n    policy: failover\n    datacenters: [par, ams, nyc, sin]\n"
        f"    members:\n{members}"
        "cluster: {max_down_fraction: 0.5, down_window: 30s, hold_max: 10m}\n"
    )
    return path


async def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_a_surge_is_held_until_released_and_a_single_loss_is_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backends = {dc: await HttpBackend(f"127.0.0.{20 + i}").start() for i, dc in enumerate(DCS)}
    daemon = Daemon(load(_config(tmp_path, {dc: b.port for dc, b in backends.items()})))
    await daemon.start()
    try:
        keys = {key.address: key for key in daemon.monitor.states}
        snap = daemon.store.current

        # One datacenter of four (25%, under the line of 50%): an ordinary failover.
        backends["par"].behaviour = Behaviour(status=503)
        await _wait(lambda: snap().status(keys["127.0.0.20"]) is Status.DOWN, 3.0, "par down")
        assert daemon.cluster is not None and daemon.cluster.governor.hold is None

        # Then the other three at once (75% of all within the window): a checker-side fault.
        with caplog.at_level(logging.CRITICAL, logger="geodns.cluster.node"):
            for dc in ("ams", "nyc", "sin"):
                backends[dc].behaviour = Behaviour(status=503)
            await _wait(
                lambda: daemon.cluster is not None and daemon.cluster.governor.hold is not None, 3.0, "a hold"
            )
        await asyncio.sleep(0.5)
        # The state before the surge: par's down, within the window, is part of it.
        assert "blast-radius governor holds" in caplog.text
        for address in ("127.0.0.20", "127.0.0.21", "127.0.0.22", "127.0.0.23"):
            assert daemon.monitor.states[keys[address]].status is Status.DOWN  # what the probes say
            assert snap().status(keys[address]) is Status.UP  # what the answers use
        assert "held up by the governor" in snap().states[keys["127.0.0.21"]].reason

        assert daemon.admin is not None and daemon.admin.bound is not None
        api = f"http://{daemon.admin.bound.host}:{daemon.admin.bound.port}"
        async with aiohttp.ClientSession() as session, session.get(api + "/metrics") as response:
            text = await response.text()
        assert "geodns_governor_hold 1.0" in text and "geodns_governor_held_targets 4.0" in text

        shown = await asyncio.to_thread(run_geodns, "cluster", "--api", api, cwd=tmp_path)
        assert shown.returncode == 0 and "GOVERNOR HOLDING 4 target(s)" in shown.stdout, shown.stdout
        released = await asyncio.to_thread(run_geodns, "release", "--api", api, cwd=tmp_path)
        assert released.returncode == 0, released.stderr
        await _wait(lambda: snap().status(keys["127.0.0.21"]) is Status.DOWN, 2.0, "the held downs applied")
        assert daemon.cluster is not None and daemon.cluster.governor.hold is None
        again = await asyncio.to_thread(run_geodns, "release", "--api", api, cwd=tmp_path)
        assert again.returncode != 0 and "holds nothing" in again.stderr
    finally:
        await daemon.stop()
        for backend in backends.values():
            await backend.stop()


@needs("chromium")
@pytest.mark.asyncio
async def test_the_status_page_shows_the_cluster_and_the_governor(tmp_path: Path) -> None:
    backends = {dc: await HttpBackend(f"127.0.0.{20 + i}").start() for i, dc in enumerate(DCS)}
    daemon = Daemon(load(_config(tmp_path, {dc: b.port for dc, b in backends.items()})))
    await daemon.start()
    try:
        for backend in backends.values():
            backend.behaviour = Behaviour(status=503, body="<b>injected</b>")
        await _wait(
            lambda: daemon.cluster is not None and daemon.cluster.governor.hold is not None, 3.0, "a hold"
        )
        assert daemon.admin is not None and daemon.admin.bound is not None
        dom = await dump_dom(f"http://{daemon.admin.bound}/")
        assert "<h3>Cluster</h3>" in dom and "governor holding 4 target(s) up" in dom, dom
        assert "<b>injected</b>" not in dom
    finally:
        await daemon.stop()
        for backend in backends.values():
            await backend.stop()
