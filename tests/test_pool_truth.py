"""A pool failing open says so everywhere (log, gauge, status, explain), each pool
says where it answers from since when, the timeline and probe strips tell the
story, and Route53 mode is not ready while it cannot sync."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from geodns.api.apiclient import render_status
from geodns.config import load
from geodns.daemon import Daemon
from geodns.steering.explain import explain, render
from tests.backends import HttpBackend, backends_on
from tests.configs import snapshot, write_zone
from tests.conftest import serving
from tests.route53env import Moto
from tests.waiting import until

ADDRESSES = {"par": ["127.0.0.71", "127.0.0.72"], "ams": ["127.0.0.73"]}


def _config(tmp_path: Path, port: int, extra: str = "") -> Path:
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    members = ", ".join(f"{{address: {a}, dc: {dc}}}" for dc, addrs in ADDRESSES.items() for a in addrs)
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 1}\n'
        "datacenters: {par: {}, ams: {}}\n"
        f"checks: {{web: {{type: http, port: {port}, path: /, interval: 200ms, timeout: 150ms, rise: 1,"
        " fall: 1, jitter: 0s}}\n"
        f"pools:\n  web: {{check: web, datacenters: [par, ams], ttl: 60, degraded_ttl: 10,"
        f" members: [{members}]}}\n" + extra
    )
    return tmp_path / "geodns.yaml"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[str, HttpBackend]]:
    async with backends_on("127.0.0.71", "127.0.0.72", "127.0.0.73") as found:
        yield found


def _gauge(daemon: Daemon, name: str, **labels: str) -> float | None:
    return daemon.metrics_registry.registry.get_sample_value(name, labels)


@pytest.mark.asyncio
async def test_failing_open_is_loud_once_and_answering_from_follows(
    tmp_path: Path, backends: dict[str, HttpBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="geodns.steering.poolwatch")
    port = backends["127.0.0.71"].port
    async with serving(_config(tmp_path, port)) as daemon:
        await until(lambda: daemon.pool_watch.to_json("web") is not None, 5.0)
        now = daemon.pool_watch.to_json("web")
        assert now is not None and now["answering_from"] == ["par"] and not now["failing_open"]
        assert _gauge(daemon, "geodns_pool_fallback", pool="web") == 0
        assert _gauge(daemon, "geodns_pool_answering", pool="web", dc="par") == 1

        for address in ("127.0.0.71", "127.0.0.72"):
            backends[address].behaviour.status = 503
        await until(lambda: (daemon.pool_watch.to_json("web") or {})["answering_from"] == ["ams"], 5.0)
        assert _gauge(daemon, "geodns_pool_answering", pool="web", dc="par") is None
        assert "pool web: now answering from ams (was par)" in caplog.text

        backends["127.0.0.73"].behaviour.status = 503
        await until(lambda: (daemon.pool_watch.to_json("web") or {})["failing_open"], 5.0)
        await asyncio.sleep(0.6)  # three more probe rounds, all still failing: said once, not per round
        said = [r.getMessage() for r in caplog.records if "answering all of them" in r.getMessage()]
        assert said == ["pool web: all 3 members down, answering all of them (fallback all)"]
        assert _gauge(daemon, "geodns_pool_fallback", pool="web") == 1

        doc = daemon.status()
        text = render_status(doc)
        assert "FAILING OPEN since" in text and "all 3 members down, answering all of them" in text
        live = render(daemon.explain("www.example.test.", "A", "127.0.0.1", None))
        assert "FAILING OPEN: no member is up, answering all 3 members (fallback all)" in live
        assert "TTL 10: pool web's degraded_ttl (10s, not 60s: a member is not up)" in live

        # The story: the timeline names each change, probe strips show the failures,
        # and an up member's row never carries an old failure reason.
        subjects = [(e["subject"], e["old"], e["new"]) for e in doc["events"]]
        assert ("member 127.0.0.73", "up", "down") in subjects
        assert ("pool web", "answering", "fallback all") in subjects
        members = {m["address"]: m for m in doc["pools"][0]["members"]}
        assert members["127.0.0.73"]["history"][-1][0] is False
        assert "HTTP 503" in members["127.0.0.73"]["reason"]

        backends["127.0.0.73"].behaviour.status = 200
        await until(lambda: not (daemon.pool_watch.to_json("web") or {})["failing_open"], 5.0)
        assert any("pool web: no longer failing open after" in r.getMessage() for r in caplog.records)
        assert _gauge(daemon, "geodns_pool_fallback", pool="web") == 0
        members = {m["address"]: m for m in daemon.status()["pools"][0]["members"]}
        assert members["127.0.0.73"]["state"] == "up" and members["127.0.0.73"]["reason"] == ""
        assert members["127.0.0.73"]["history"][-1][0] is True


def test_explain_offline_never_claims_a_probe_ran(tmp_path: Path) -> None:
    config = load(_config(tmp_path, 9))
    doc = explain(config, snapshot(config), "www.example.test.", "A", "127.0.0.1", None)
    doc["offline"] = True
    text = render(doc)
    assert "probes say" not in text
    assert "offline what-if: no probe ran" in text and "(assumed: not probed)" in text
    assert "TTL 60: pool web's ttl (60s)" in text


@pytest.mark.asyncio
async def test_route53_sync_that_keeps_failing_is_not_ready(tmp_path: Path, moto: Moto) -> None:
    extra = (
        "route53:\n"
        f"  endpoint_url: {moto.url}\n"
        "  reconcile_interval: 300ms\n"
        "  unready_after: 2\n"
        "  records: [{name: www.example.test., hosted_zone_id: ZNOSUCHZONE, pool: web}]\n"
    )
    config = (
        _config(tmp_path, 9, extra).read_text().replace("state_dir: state,", "state_dir: state, mode: both,")
    )
    (tmp_path / "geodns.yaml").write_text(config)
    async with serving(tmp_path / "geodns.yaml") as daemon:
        assert daemon.admin is not None and daemon.admin.bound is not None
        url = f"http://{daemon.admin.bound}"
        async with aiohttp.ClientSession() as session:
            body = ""
            async with asyncio.timeout(10):
                while "Route53 sync failing" not in body:
                    await asyncio.sleep(0.1)
                    async with session.get(url + "/readyz") as resp:
                        body = await resp.text()
                        status = resp.status
            assert status == 503 and "NoSuchHostedZone" in body
            async with session.get(url + "/v1/status") as resp:
                doc = await resp.json()
        assert doc["route53"]["failing"] and doc["route53"]["failed_rounds"] >= 2
        assert "route53: FAILING for" in render_status(doc)
