"""config/cluster/ run as the README says: par's instance with `geodns demo` (which
also simulates every member's backend), ams and nyc with `geodns serve`, one
shared GEODNS_CLUSTER_TOKEN. They agree, and breaking par moves all three."""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.daemonproc import Proc, spawn
from tests.dnsclient import ask

DCS = {"par": "127.0.1.1", "ams": "127.0.1.2", "nyc": "127.0.1.3"}


async def _answers(procs: dict[str, Proc]) -> dict[str, set[str]]:
    out = {}
    for dc, proc in procs.items():
        reply = await ask(proc.dns, "www.example.com.", "A")
        out[dc] = {rd.to_text() for rrset in reply.answer for rd in rrset}
    return out


async def _until(procs: dict[str, Proc], want: set[str], timeout: float) -> float:
    began = time.monotonic()
    while True:
        seen = await _answers(procs)
        if all(v == want for v in seen.values()):
            return time.monotonic() - began
        assert time.monotonic() - began < timeout, seen
        await asyncio.sleep(0.1)


def _post(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=2):
        pass


@pytest.mark.asyncio
async def test_the_example_cluster_agrees_and_moves_together(tmp_path: Path) -> None:
    shutil.copytree(REPO / "config" / "cluster", tmp_path / "config" / "cluster")
    shutil.copytree(REPO / "config" / "zones", tmp_path / "config" / "zones")
    env = {"GEODNS_CLUSTER_TOKEN": "example-cluster-test-token"}
    procs: dict[str, Proc] = {}
    try:
        for dc, address in DCS.items():
            procs[dc] = await spawn(
                tmp_path / "config" / "cluster" / f"{dc}.yaml",
                env=env,
                command="demo" if dc == "par" else "serve",
                http_listen=f"{address}:8053",
            )
        await _until(procs, {"127.0.0.11"}, 20.0)
        await asyncio.to_thread(_post, "http://127.0.0.11:8080/break?dc=par")
        took = await _until(procs, {"127.0.0.21"}, 10.0)
        assert took <= 1.0 * 2 + 1.0 + 1.0 + 1.0, (
            took
        )  # interval x fall + cluster.interval + 1 s (+ a probe timeout)
        await asyncio.to_thread(_post, "http://127.0.0.11:8080/heal?dc=par")
        await _until(procs, {"127.0.0.11"}, 10.0)
        assert any(
            "cluster: web-health target 127.0.0.11:8080: up -> down" in line for line in procs["ams"].log
        )
    finally:
        for proc in procs.values():
            await proc.kill()
