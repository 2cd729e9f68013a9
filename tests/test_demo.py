"""The README's walkthrough: `geodns demo` on the shipped example, drain a
datacenter, break one, and watch the answers move."""

from __future__ import annotations

import asyncio
import shutil
import socket
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


def _free_backend_port() -> int:
    """A port free on every address the example's backends use."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.11", 0))
            port = int(probe.getsockname()[1])
        try:
            for host in ("127.0.0.12", "127.0.0.21", "127.0.0.31"):
                with socket.socket() as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on every backend address")


async def becomes(where: Endpoint, want: set[str], within: float) -> None:
    async with asyncio.timeout(within):
        while www(where) != want:  # noqa: ASYNC110 - polling DNS, as a client would
            await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_demo_walkthrough(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config", tmp_path / "config")  # its state_dir stays inside tmp_path
    # A free port for the simulated backends, so a demo the user runs meanwhile (on
    # 8080, 5300 and 8053) and this test never collide; spawn picks DNS and HTTP ports.
    port = _free_backend_port()
    main = tmp_path / "config" / "geodns.yaml"
    assert "    port: 8080\n" in main.read_text()
    main.write_text(main.read_text().replace("    port: 8080\n", f"    port: {port}\n"))
    demo = await spawn(main, command="demo")
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
            session.post(f"http://127.0.0.11:{port}/break?dc=par") as r,
        ):
            assert r.status == 200
        await becomes(demo.dns, ams, within=2 * 3 + 1 + 2)  # interval x fall + timeout, with slack
        await demo.wait_for_log("member 127.0.0.12 (par, pool web): up -> down after 3 failures: HTTP 503")
    finally:
        await demo.kill()
