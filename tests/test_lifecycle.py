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
