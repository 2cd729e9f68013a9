"""`geodns hosts`: local resolution files that follow failover. A real daemon, real
backends, the real command as a process: a failover rewrites the file within a
second, a killed daemon leaves it intact, a failing pool never empties it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.backends import HttpBackend, backends_on
from tests.configs import write_zone
from tests.conftest import REPO
from tests.daemonproc import Proc, run_geodns, spawn
from tests.waiting import until

PAR, AMS, STANDBY = "127.0.0.67", "127.0.0.68", "127.0.0.69"


def _config(tmp_path: Path, port: int) -> Path:
    write_zone(
        tmp_path,
        "  db: {type: A, pool: db}\n"
        "  cache: {type: A, pool: cache}\n"
        "  static: {type: A, values: [192.0.2.10, 192.0.2.11]}\n"
        "  primary: {type: CNAME, value: db}\n",
    )
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 1}\n'
        "datacenters: {par: {}, ams: {}}\n"
        f"checks: {{web: {{type: http, port: {port}, path: /, interval: 200ms, timeout: 150ms, rise: 1,"
        " fall: 1, jitter: 0s}}\n"
        "pools:\n"
        "  db: {check: web, datacenters: [par, ams],"
        f" members: [{{address: {PAR}, dc: par}}, {{address: {AMS}, dc: ams}}]}}\n"
        f"  cache: {{check: web, fallback: empty, members: [{{address: {STANDBY}, dc: par}}]}}\n"
    )
    return tmp_path / "geodns.yaml"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[str, HttpBackend]]:
    async with backends_on(PAR, AMS, STANDBY) as found:
        yield found


@pytest_asyncio.fixture
async def daemon(tmp_path: Path, backends: dict[str, HttpBackend]) -> AsyncIterator[Proc]:
    running = await spawn(_config(tmp_path, backends[PAR].port))
    try:
        await running.wait_for_log("every member has a fresh probe result")
        yield running
    finally:
        await running.kill()


def _api(daemon: Proc) -> str:
    return f"http://{daemon.http.host}:{daemon.http.port}"


@pytest.mark.asyncio
async def test_one_shot_in_every_format(daemon: Proc) -> None:
    names = ("db.example.test", "primary.example.test", "static.example.test")
    run = await asyncio.to_thread(run_geodns, "hosts", *names, "--api", _api(daemon))
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stdout.splitlines() if not line.startswith("#")]
    assert lines == [
        f"{PAR}\tdb.example.test",
        f"{PAR}\tprimary.example.test",  # the CNAME followed to the pool's answer
        "192.0.2.10\tstatic.example.test",
        "192.0.2.11\tstatic.example.test",
    ]
    dnsmasq = await asyncio.to_thread(
        run_geodns, "hosts", "db.example.test", "--format", "dnsmasq", "--api", _api(daemon)
    )
    assert f"host-record=db.example.test,{PAR}" in dnsmasq.stdout.splitlines()
    unbound = await asyncio.to_thread(
        run_geodns, "hosts", "db.example.test", "--format", "unbound", "--api", _api(daemon)
    )
    assert f'local-data: "db.example.test. 3600 IN A {PAR}"' in unbound.stdout.splitlines()
    nothing = await asyncio.to_thread(run_geodns, "hosts", "nope.example.test", "--api", _api(daemon))
    assert nothing.returncode == 1 and "resolves to no address" in nothing.stderr


async def _watch(daemon: Proc, output: Path, *names: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "geodns",
        "hosts",
        *names,
        "--watch",
        "--output",
        str(output),
        "--api",
        _api(daemon),
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stderr=asyncio.subprocess.PIPE,
    )


def _addresses(path: Path, name: str) -> set[str]:
    if not path.exists():
        return set()
    return {
        line.split("\t")[0]
        for line in path.read_text().splitlines()
        if not line.startswith("#") and line.endswith("\t" + name)
    }


@pytest.mark.asyncio
async def test_watch_follows_a_failover_within_a_second_and_survives_the_daemon(
    daemon: Proc, backends: dict[str, HttpBackend], tmp_path: Path
) -> None:
    output = tmp_path / "etc" / "hosts.geodns"
    output.parent.mkdir()
    watcher = await _watch(daemon, output, "db.example.test", "cache.example.test")
    try:
        await until(lambda: _addresses(output, "db.example.test") == {PAR}, 10, "the first file")
        assert oct(output.stat().st_mode & 0o777) == "0o644"

        backends[PAR].behaviour.status = 503
        line = await daemon.wait_for_log(f"member {PAR} (par, pool db): up -> down", timeout=10)
        assert line
        changed_at = time.monotonic()
        await until(lambda: _addresses(output, "db.example.test") == {AMS}, 5, "the failover in the file")
        assert time.monotonic() - changed_at < 1.0

        # Every member of `cache` down, and its fallback is `empty`: the name keeps its
        # last address instead of vanishing from the file.
        backends[STANDBY].behaviour.status = 503
        await daemon.wait_for_log(f"member {STANDBY} (par, pool cache): up -> down", timeout=10)
        await until(
            lambda: "cache.example.test. resolves to nothing now" in output.read_text(), 5, "the kept name"
        )
        assert _addresses(output, "cache.example.test") == {STANDBY}

        before = output.read_text()
        await daemon.kill()
        assert watcher.stderr is not None
        async with asyncio.timeout(20):
            while b"keeps its last good content" not in (said := await watcher.stderr.readline()):
                assert said, "the watcher exited"
        assert output.read_text() == before  # intact, and said so
        watcher.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(watcher.wait(), 10) == 0
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()


@pytest.mark.asyncio
async def test_a_pool_failing_open_writes_its_fallback_answer(
    daemon: Proc, backends: dict[str, HttpBackend], tmp_path: Path
) -> None:
    backends[PAR].behaviour.status = 503
    backends[AMS].behaviour.status = 503
    await daemon.wait_for_log(f"member {AMS} (ams, pool db): up -> down", timeout=10)
    await daemon.wait_for_log(f"member {PAR} (par, pool db): up -> down", timeout=10)
    run = await asyncio.to_thread(run_geodns, "hosts", "db.example.test", "--api", _api(daemon))
    assert run.returncode == 0, run.stderr
    assert "# FAILING OPEN (every member down, answering the fallback): db" in run.stdout
    assert {line.split("\t")[0] for line in run.stdout.splitlines() if not line.startswith("#")} == {PAR, AMS}
