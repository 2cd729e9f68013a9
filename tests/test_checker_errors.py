"""Our failures are not the backends' failures: a probe that failed because of
this host (no fds left, a stalled event loop, more probes than it can run)
holds the member's state, is counted and said, and turns /readyz to 503 while it
lasts. Real backends, real sockets, a real fd limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
import pytest_asyncio

from geodns.config import load
from geodns.config.model import Check
from geodns.daemon import Daemon
from geodns.health.checks import Target, make_probe
from geodns.health.health import Status
from geodns.startup import claim_fds
from tests.backends import HttpBackend, process_backends
from tests.configs import write_zone
from tests.conftest import REPO
from tests.daemonproc import run_geodns
from tests.waiting import until


class Listening(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...


@contextlib.contextmanager
def no_fds_left() -> Iterator[None]:
    """Every file descriptor taken: the next socket() fails with EMFILE (a real one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
    try:
        with contextlib.suppress(OSError):
            while len(held) < 5000:
                held.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_emfile_is_a_checker_error_not_a_down_backend(kind: str) -> None:
    backend = await HttpBackend("127.0.0.61").start()
    probe = make_probe(Check(name="t", type=kind, port=backend.port))
    try:
        assert (await probe.probe(Target("127.0.0.61", backend.port))).ok
        with no_fds_left():
            result = await probe.probe(Target("127.0.0.61", backend.port))
        assert not result.ok and result.ours and result.kind == "emfile"
        assert result.reason.endswith("too many open files in geodns (EMFILE)")
    finally:
        await probe.close()
        await backend.stop()


def _config(
    tmp: Path,
    backends: Sequence[Listening],
    *,
    interval: str,
    timeout: str,
    members: int = 1,
    extra: str = "",
) -> Path:
    write_zone(tmp, "  www: {type: A, pool: web}\n")
    listed = ", ".join(f"{{address: {b.host}, dc: par, check_port: {b.port}}}" for b in backends[:members])
    (tmp / "geodns.yaml").write_text(f"""\
server: {{dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state{extra}}}
datacenters: {{par: {{}}}}
checks:
  web: {{type: http, interval: {interval}, timeout: {timeout}, rise: 2, fall: 2, jitter: 0s}}
pools:
  web: {{check: web, policy: all, members: [{listed}]}}
""")
    return tmp / "geodns.yaml"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    started = [await HttpBackend(f"127.0.0.{61 + i}").start() for i in range(6)]
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


def _statuses(daemon: Daemon) -> set[Status]:
    return {h.status for h in daemon.monitor.states.values()}


async def _metrics(daemon: Daemon) -> str:
    return daemon.metrics().decode()


@pytest.mark.asyncio
async def test_no_fds_holds_states_and_says_so(tmp_path: Path) -> None:
    # Backends of their own processes: one in this process would be starved too, stop
    # accepting for a second (asyncio's pause after EMFILE) and really time out probes.
    async with process_backends("127.0.0.61", "127.0.0.62", "127.0.0.63") as backends:
        await _no_fds_hold_states(tmp_path, backends)


async def _no_fds_hold_states(tmp_path: Path, backends: Sequence[Listening]) -> None:
    daemon = Daemon(load(_config(tmp_path, backends, interval="200ms", timeout="150ms", members=3)))
    await daemon.start()
    try:
        await until(lambda: _statuses(daemon) == {Status.UP} and daemon.monitor.ready(), 3)
        with no_fds_left():
            await asyncio.sleep(1.0)  # five probes of each member, every one failing with EMFILE
            assert _statuses(daemon) == {Status.UP}
            # Held, and marked so (a cluster node gives no vote from such a state).
            assert all(h.held for h in daemon.monitor.states.values())
            ready, reasons = daemon.ready()
        assert not ready and any("too many open files in geodns (EMFILE)" in r for r in reasons)
        assert 'geodns_checker_errors_total{cause="emfile",check="web"}' in await _metrics(daemon)
        assert 'to="down"' not in await _metrics(daemon)
        await until(lambda: not any(h.held for h in daemon.monitor.states.values()), 2)
        assert _statuses(daemon) == {Status.UP}
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_a_stalled_event_loop_is_not_a_dead_backend(
    tmp_path: Path, backends: list[HttpBackend]
) -> None:
    """Every loop turn held 150 ms (as a saturated host would): probes that need a
    few turns time out, and the stall, not the backend, takes the blame."""
    daemon = Daemon(load(_config(tmp_path, backends, interval="300ms", timeout="200ms")))
    await daemon.start()
    loop = asyncio.get_running_loop()
    hogging = True

    def hog() -> None:
        time.sleep(0.15)
        if hogging:
            loop.call_soon(hog)

    try:
        await until(lambda: _statuses(daemon) == {Status.UP}, 3)
        loop.call_soon(hog)
        await asyncio.sleep(2.5)
        hogging = False
        await asyncio.sleep(0.2)
        assert _statuses(daemon) == {Status.UP}
        metrics = await _metrics(daemon)
        assert 'geodns_checker_errors_total{cause="loop-stall",check="web"}' in metrics
        assert 'to="down"' not in metrics
        assert any("stalled" in r for r in daemon.ready()[1])
    finally:
        hogging = False
        await daemon.stop()


@pytest.mark.asyncio
async def test_more_probes_than_the_host_runs_are_skipped_not_failed(
    tmp_path: Path, backends: list[HttpBackend]
) -> None:
    """One probe at a time, each taking 250 ms, six targets every 300 ms: most
    probes cannot be run in time. They are skipped and counted late; nobody goes
    down, and the instance says why its states are stale."""
    for b in backends:
        b.behaviour.delay = 0.25
    slow = ", max_concurrent_probes: 1"
    path = _config(tmp_path, backends, interval="300ms", timeout="280ms", members=6, extra=slow)
    daemon = Daemon(load(path))
    await daemon.start()
    try:
        await asyncio.sleep(3.0)
        assert Status.DOWN not in _statuses(daemon)
        metrics = await _metrics(daemon)
        assert 'geodns_checker_errors_total{cause="overload",check="web"}' in metrics
        assert 'geodns_probes_late_total{check="web"}' in metrics
        assert any("more than this host runs" in r for r in daemon.ready()[1])
    finally:
        await daemon.stop()


@pytest.mark.asyncio
async def test_idle_api_connections_cannot_take_every_slot(
    tmp_path: Path, backends: list[HttpBackend]
) -> None:
    """300 idle connections against a cap of 20: the API holds at most 20, evicting
    the idlest, so a real request still gets in and probes still have fds."""
    capped = ", api_max_connections: 20"
    path = _config(tmp_path, backends, interval="200ms", timeout="150ms", extra=capped)
    daemon = Daemon(load(path))
    await daemon.start()
    assert daemon.admin is not None and daemon.admin.bound is not None and daemon.admin.site is not None
    bound = daemon.admin.bound
    idle: list[asyncio.StreamWriter] = []
    try:
        for _ in range(300):
            _, writer = await asyncio.open_connection(bound.host, bound.port)
            idle.append(writer)
        await asyncio.sleep(0.2)
        guard = daemon.admin.site.guard
        assert guard is not None and len(guard.open) <= 20 and guard.evicted >= 280
        async with aiohttp.ClientSession() as session, session.get(f"http://{bound}/healthz") as resp:
            assert resp.status == 200
        assert _statuses(daemon) == {Status.UP}
    finally:
        for writer in idle:
            writer.close()
        await daemon.stop()


def test_a_configuration_that_cannot_fit_the_fd_limit_is_refused(tmp_path: Path) -> None:
    """With a hard limit of 300 open files, 256 concurrent probes (each up to two
    fds) cannot fit: geodns says so and what to change, instead of failing every
    probe with EMFILE at the first busy moment."""
    write_zone(tmp_path, "")
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: null, state_dir: state}\n'
    )

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    result = subprocess.run(
        [sys.executable, "-m", "geodns", "serve", "-c", "geodns.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    needs = "may need 834 open files (probes 512, DNS over TCP 256, the HTTP API 0, listeners and files 66)"
    assert needs in result.stderr and "but this process may open 300" in result.stderr
    # The soft limit is raised to the hard one, so the same config starts where that is enough.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert claim_fds(load(tmp_path / "geodns.yaml")) == (hard if hard != resource.RLIM_INFINITY else 1 << 20)


def test_check_says_when_the_probe_rate_is_more_than_a_host_runs(tmp_path: Path) -> None:
    """2,000 members probed every 100 ms want 20,000 probes/s: accepted (late probes
    are skipped, never failed) but said plainly, with the arithmetic."""
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    members = ", ".join(f"{{address: 10.2.{i // 250}.{i % 250 + 1}, dc: par}}" for i in range(2000))
    (tmp_path / "geodns.yaml").write_text(
        "datacenters: {par: {}}\n"
        "checks: {web: {type: tcp, port: 9, interval: 100ms, timeout: 90ms}}\n"
        f"pools:\n  web: {{check: web, members: [{members}]}}\n"
    )
    result = run_geodns("check", "-c", "geodns.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "20,000 probes/s)" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, result.stderr
    budget = "but server.max_probe_rate is 1,000"
    assert warnings[0].startswith(f"warning: 2000 probe targets want 20,000 probes/s {budget}")
    assert "1,800 probes would be in flight at once but server.max_concurrent_probes is 256" in warnings[1]
    # A modest configuration says nothing.
    small = run_geodns("check", cwd=REPO)
    assert small.returncode == 0 and "warning" not in small.stderr


@pytest.mark.asyncio
async def test_probes_beyond_the_rate_budget_are_skipped_and_said(
    tmp_path: Path, backends: list[HttpBackend]
) -> None:
    """Six targets every 100 ms want 60 probes/s; a budget of 10/s runs about that
    many, skips the rest (counted late, states held) and says why."""
    path = _config(
        tmp_path, backends, interval="100ms", timeout="80ms", members=6, extra=", max_probe_rate: 10"
    )
    daemon = Daemon(load(path))
    await daemon.start()
    try:
        before = sum(b.requests for b in backends)
        await asyncio.sleep(2.0)
        ran = sum(b.requests for b in backends) - before
        assert 5 <= ran <= 40, ran  # ~20 within the budget, not ~120
        assert _statuses(daemon) == {Status.UP}
        assert 'geodns_checker_errors_total{cause="overload",check="web"}' in await _metrics(daemon)
        assert any("more than server.max_probe_rate (10/s) probes wanted" in r for r in daemon.ready()[1])
    finally:
        await daemon.stop()
