"""The real daemon process: start, /healthz, SIGHUP reloads (good and bad), SIGTERM."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import dns.rcode
import pytest
import pytest_asyncio

from tests.conftest import DATA
from tests.daemonproc import Proc, serve_process, spawn
from tests.dnsclient import Endpoint, ask
from tests.route53env import FAKE_AWS
from tests.waiting import until


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    shutil.copytree(DATA, tmp_path / "cfg")
    return tmp_path / "cfg" / "geodns.yaml"


@pytest_asyncio.fixture
async def daemon(config_copy: Path) -> AsyncIterator[Proc]:
    running = await spawn(config_copy)
    await running.wait_for_log("serving 3 zone(s)")
    try:
        yield running
    finally:
        await running.kill()


async def mail_address(where: Endpoint) -> set[str]:
    msg = await ask(where, "mail.example.test.", "A")
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


@pytest.mark.asyncio
async def test_healthz_and_answers(daemon: Proc) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{daemon.http.host}:{daemon.http.port}/healthz") as resp,
    ):
        assert resp.status == 200
    assert await mail_address(daemon.dns) == {"192.0.2.25"}


@pytest.mark.asyncio
async def test_sighup_reloads_a_good_config_and_keeps_the_old_on_a_bad_one(
    daemon: Proc, config_copy: Path
) -> None:
    zone = config_copy.parent / "zones" / "example.test.yaml"
    original = zone.read_text()
    zone.write_text(
        original.replace("mail: {type: A, value: 192.0.2.25}", "mail: {type: A, value: 192.0.2.26}")
    )
    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_for_log("reloaded: serving 3 zone(s)")
    assert await mail_address(daemon.dns) == {"192.0.2.26"}

    # Now break it twice over: both problems logged with file:line:col, old data still served.
    zone.write_text(
        original.replace("mail: {type: A, value: 192.0.2.25}", "mail: {type: A, value: 192.0.2.999}").replace(
            "ns1: {type: A,", "ns1: {type: B,"
        )
    )
    daemon.proc.send_signal(signal.SIGHUP)
    line = await daemon.wait_for_log("reload failed")
    assert "2 problem(s)" in line
    await daemon.wait_for_log("records.ns1.type", timeout=2)
    text = "".join(daemon.log)
    where = re.escape(str(zone))
    assert re.search(rf"{where}:\d+:\d+: records.mail: '192.0.2.999' is not an IP address", text)
    assert re.search(rf"{where}:\d+:\d+: records.ns1.type: unsupported record type 'B'", text)
    assert await mail_address(daemon.dns) == {"192.0.2.26"}
    assert daemon.proc.returncode is None


@pytest.mark.asyncio
async def test_no_query_is_lost_across_reloads(daemon: Proc) -> None:
    answered = 0
    for i in range(200):  # bounded: 200 queries, 10 reloads
        if i % 20 == 0:
            daemon.proc.send_signal(signal.SIGHUP)
        msg = await ask(daemon.dns, "www.example.test.", "A")  # one try each, no retry
        assert msg.rcode() == dns.rcode.NOERROR
        answered += 1
    assert answered == 200
    await daemon.wait_for_log("reloaded")


@pytest.mark.asyncio
async def test_sigterm_stops_within_a_second(daemon: Proc) -> None:
    assert await mail_address(daemon.dns) == {"192.0.2.25"}
    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(daemon.proc.wait(), timeout=5)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 1.0, f"took {elapsed:.2f}s to stop"


@pytest.mark.asyncio
async def test_port_in_use_is_a_clear_error(daemon: Proc, config_copy: Path) -> None:
    proc = await serve_process(config_copy, f"127.0.0.1:{daemon.dns.port}")
    _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 1
    assert b"Traceback" not in err
    assert b"cannot serve: cannot listen on" in err and b"address in use by another process" in err


@pytest.mark.asyncio
async def test_sigterm_stops_within_a_second_while_route53_hangs(tmp_path: Path) -> None:
    """A Route53 endpoint that accepts and never answers (a dead proxy, a black hole)
    must not hold SIGTERM: the sync's calls run on threads nobody waits for at exit."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "t.yaml").write_text(
        "origin: example.test.\nsoa: {mname: ns1.example.test., rname: h.example.test.}\n"
        'records:\n  "@": {type: NS, value: ns1}\n  ns1: {type: A, value: 192.0.2.53}\n'
        "  www: {type: A, pool: web}\n"
    )
    (tmp_path / "geodns.yaml").write_text(
        "server: {mode: both, state_dir: state, workers: 1}\n"
        "datacenters: {par: {}}\n"
        "checks: {web: {type: tcp, port: 9, interval: 1s, timeout: 200ms}}\n"
        "pools:\n  web: {check: web, members: [{address: 127.0.0.91, dc: par}]}\n"
        f"route53:\n  endpoint_url: http://127.0.0.1:{port}\n"
        "  records: [{name: www.example.test., hosted_zone_id: Z1, pool: web}]\n"
    )
    proc = await spawn(tmp_path / "geodns.yaml", env=FAKE_AWS)
    try:
        await until(lambda: bool(held), 10, "the sync's first call (which hangs)")
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.proc.wait(), timeout=60)
        elapsed = time.monotonic() - started
    finally:
        await proc.kill()
        server.close()
        for writer in held:
            writer.close()
    assert code == 0
    assert elapsed < 1.0, f"took {elapsed:.2f}s to stop"
