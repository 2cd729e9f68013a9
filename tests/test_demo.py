"""The README's walkthrough: `geodns demo` on the shipped example, drain a
datacenter, break one, and watch the answers move."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import dns.message
import dns.query
import pytest

from tests.conftest import REPO
from tests.daemonproc import run_geodns, spawn
from tests.dnsclient import Endpoint


def www(where: Endpoint) -> set[str]:
    q = dns.message.make_query("www.example.com.", "A")
    msg = dns.query.udp(q, where.host, port=where.port, timeout=2)
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


async def becomes(where: Endpoint, want: set[str], within: float) -> None:
    async with asyncio.timeout(within):
        while www(where) != want:  # noqa: ASYNC110 - polling DNS, as a client would
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_demo_walkthrough(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")  # its state_dir stays inside tmp_path
    demo = await spawn(tmp_path / "config" / "geodns.yaml", command="demo")
    try:
        await demo.wait_for_log("every member has a fresh probe result: ready")
        par, ams = {"127.0.0.11", "127.0.0.12"}, {"127.0.0.21"}
        assert www(demo.dns) == par
        api = f"http://{demo.http.host}:{demo.http.port}"
        drained = await asyncio.to_thread(
            run_geodns, "drain", "dc=par", "--reason", "power work", "--api", api, cwd=tmp_path
        )
        assert drained.returncode == 0, drained.stderr
        assert www(demo.dns) == ams
        undrained = await asyncio.to_thread(run_geodns, "undrain", "dc=par", "--api", api, cwd=tmp_path)
        assert undrained.returncode == 0, undrained.stderr
        assert www(demo.dns) == par
        async with (
            aiohttp.ClientSession() as session,
            session.post("http://127.0.0.11:8080/break?dc=par") as r,
        ):
            assert r.status == 200
        await becomes(demo.dns, ams, within=2 * 3 + 1 + 2)  # interval x fall + timeout, with slack
        await demo.wait_for_log("member 127.0.0.12 (par, pool web): up -> down after 3 failures: HTTP 503")
    finally:
        await demo.kill()
