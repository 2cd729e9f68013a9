"""Operational metrics: replies by rcode and type (one process and summed over DNS
workers), build info, process figures, reloads that succeed or fail, drains in
force, and no `_created` series."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from geodns import __version__
from geodns.daemon import Daemon
from tests.configs import write_zone
from tests.conftest import serving
from tests.daemonproc import Proc, spawn
from tests.dnsclient import Endpoint, ask


def _config(tmp_path: Path, workers: int = 1) -> Path:
    write_zone(tmp_path, "  www: {type: A, value: 192.0.2.80}\n  txt: {type: TXT, value: hello}\n")
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state,'
        f" workers: {workers}}}\n"
        "datacenters: {par: {}}\n"
        "pools:\n  web: {members: [{address: 192.0.2.1, dc: par}]}\n"
    )
    return tmp_path / "geodns.yaml"


async def _scrape(http: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{http}/metrics") as resp:
        text = await resp.text()
    assert "_created" not in text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _responses(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["rcode"], dict(labels)["qtype"]): value
        for (name, labels), value in samples.items()
        if name == "geodns_dns_responses_total"
    }


async def _queries(dns: Endpoint) -> None:
    for _ in range(3):
        await ask(dns, "www.example.test.", "A")
    await ask(dns, "txt.example.test.", "TXT", tcp=True)
    await ask(dns, "nope.example.test.", "AAAA")
    await ask(dns, "www.example.org.", "A")  # not ours: REFUSED


WANT = {("NOERROR", "A"): 3.0, ("NOERROR", "TXT"): 1.0, ("NXDOMAIN", "AAAA"): 1.0, ("REFUSED", "A"): 1.0}


@pytest_asyncio.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with serving(_config(tmp_path)) as running:
        yield running


def _http(daemon: Daemon) -> str:
    assert daemon.admin is not None and daemon.admin.bound is not None
    return str(daemon.admin.bound)


@pytest.mark.asyncio
async def test_replies_by_rcode_and_type_and_the_process_figures(daemon: Daemon) -> None:
    bound = daemon.dns_bound()[0]
    await _queries(Endpoint(bound.host, bound.port))
    samples = await _scrape(_http(daemon))
    assert _responses(samples) == WANT
    assert (
        samples[("geodns_build_info", (("python", samples_python(samples)), ("version", __version__)))] == 1
    )
    assert samples[("process_resident_memory_bytes", ())] > 10_000_000
    assert samples[("process_open_fds", ())] > 5
    assert ("process_cpu_seconds_total", ()) in samples


def samples_python(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    return next(dict(labels)["python"] for (name, labels) in samples if name == "geodns_build_info")


@pytest.mark.asyncio
async def test_reloads_and_drains_are_counted(daemon: Daemon, tmp_path: Path) -> None:
    # Read from the registry: /metrics renders are shared for half a second.
    def value(name: str, **labels: str) -> float | None:
        return daemon.metrics_registry.registry.get_sample_value(name, labels)

    assert value("geodns_reloads_total", result="failed") == 0
    assert value("geodns_last_reload_successful") == 1
    good = (tmp_path / "geodns.yaml").read_text()
    (tmp_path / "geodns.yaml").write_text(good.replace("pools:", "pools: [broken\n"))
    assert not await daemon.reload()
    assert value("geodns_reloads_total", result="failed") == 1
    assert value("geodns_last_reload_successful") == 0
    (tmp_path / "geodns.yaml").write_text(good)
    assert await daemon.reload()
    assert value("geodns_reloads_total", result="ok") == 1
    assert value("geodns_last_reload_successful") == 1
    daemon.add_override("dc=par", "down", "maintenance", None)
    assert value("geodns_overrides_active", state="down") == 1
    assert value("geodns_overrides_active", state="up") == 0


@pytest_asyncio.fixture
async def with_workers(tmp_path: Path) -> AsyncIterator[Proc]:
    running = await spawn(_config(tmp_path, workers=2))
    try:
        yield running
    finally:
        running.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(running.proc.wait(), 10)


@pytest.mark.asyncio
async def test_replies_are_summed_over_dns_workers(with_workers: Proc) -> None:
    await _queries(with_workers.dns)
    http = f"{with_workers.http.host}:{with_workers.http.port}"
    seen: dict[tuple[str, str], float] = {}
    for _ in range(40):  # the workers report their counters twice a second
        seen = _responses(await _scrape(http))
        if seen == WANT:
            break
        await asyncio.sleep(0.1)
    assert seen == WANT
