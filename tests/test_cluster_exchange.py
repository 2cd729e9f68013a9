"""Three instances on loopback exchanging observations over their real HTTP APIs:
they agree, a backend's death crosses the cluster, a peer that falls silent or
answers garbage stops counting (and nothing raises), and the endpoint wants the
cluster token. Partitions need network namespaces: tests/test_cluster_netns.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from geodns.config import load
from geodns.daemon import Daemon
from geodns.errors import GeoDnsError
from geodns.health.health import Status
from tests.backends import Behaviour, HttpBackend
from tests.configs import write_zone
from tests.daemonproc import run_geodns
from tests.dnsclient import Endpoint, ask
from tests.ports import unused_port
from tests.waiting import until

TOKEN = "cluster-secret-for-tests"
DCS = ("par", "ams", "nyc")


@dataclass
class Cluster:
    daemons: dict[str, Daemon]
    backends: dict[str, HttpBackend]
    http: dict[str, int]

    def dns(self, name: str) -> Endpoint:
        bound = self.daemons[name].dns_bound()[0]
        return Endpoint(bound.host, bound.port)


def _config(
    root: Path, name: str, http: dict[str, int], backends: dict[str, int], extra_peer: str = ""
) -> Path:
    folder = root / name
    folder.mkdir()
    write_zone(folder, "  www: {type: A, pool: web}\n")
    (folder / "token").write_text(TOKEN)
    os.chmod(folder / "token", 0o600)
    peers = "".join(
        f"    - {{name: {other}, url: 'http://127.0.0.1:{http[other]}', datacenter: {other}}}\n"
        for other in DCS
        if other != name
    )
    members = "".join(
        f"      - {{address: 127.0.0.{9 + i}, dc: {dc}, check_port: {backends[dc]}}}\n"
        for i, dc in enumerate(DCS)
    )
    (folder / "geodns.yaml").write_text(
        f"server: {{dns_listen: ['127.0.0.1:0'], http_listen: '127.0.0.1:{http[name]}', state_dir: state,"
        f" workers: 1, name: {name}, datacenter: {name}}}\n"
        "datacenters: {par: {}, ams: {}, nyc: {}}\n"
        "checks: {web: {type: http, interval: 300ms, timeout: 250ms, rise: 1, fall: 2}}\n"
        "pools:\n  web:\n    check: web\n    policy: failover\n    datacenters: [par, ams, nyc]\n"
        f"    members:\n{members}"
        f"cluster:\n  token_file: token\n  interval: 500ms\n  timeout: 1500ms\n  peers:\n{peers}{extra_peer}"
    )
    return folder / "geodns.yaml"


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    backends = {dc: await HttpBackend(f"127.0.0.{9 + i}").start() for i, dc in enumerate(DCS)}
    http = {dc: unused_port() for dc in DCS}
    daemons: dict[str, Daemon] = {}
    try:
        for dc in DCS:
            daemon = Daemon(load(_config(tmp_path, dc, http, {d: b.port for d, b in backends.items()})))
            await daemon.start()
            daemons[dc] = daemon
        yield Cluster(daemons, backends, http)
    finally:
        for daemon in daemons.values():
            await daemon.stop()
        for backend in backends.values():
            await backend.stop()


async def _answers(cluster: Cluster) -> dict[str, set[str]]:
    out = {}
    for name in DCS:
        reply = await ask(cluster.dns(name), "www.example.test.", "A")
        out[name] = {rd.to_text() for rrset in reply.answer for rd in rrset}
    return out


def _all_counted(cluster: Cluster) -> bool:
    return all(len(d.cluster.counted()) == 2 for d in cluster.daemons.values() if d.cluster)


@pytest.mark.asyncio
async def test_three_instances_agree_and_a_death_crosses_the_cluster(cluster: Cluster) -> None:
    await until(lambda: _all_counted(cluster), 5.0, "every peer counted everywhere")
    assert await _answers(cluster) == {dc: {"127.0.0.9"} for dc in DCS}
    cluster.backends["par"].behaviour = Behaviour(status=503, body="down for the test")
    # fall 2 x interval 0.3 s + the exchange: well within a second and a half everywhere.
    took = await until(
        lambda: all(
            d.store.current().status(next(iter(d.monitor.states))) is Status.DOWN
            for d in cluster.daemons.values()
        ),
        3.0,
        "par down in every instance",
    )
    assert took < 2.5
    assert await _answers(cluster) == {dc: {"127.0.0.10"} for dc in DCS}
    # Everyone says why, with every vantage's word.
    key = next(iter(cluster.daemons["ams"].monitor.states))
    reason = cluster.daemons["ams"].store.current().states[key].reason
    health = cluster.daemons["ams"].store.current().states[key]
    assert health.status is Status.DOWN
    assert "503" in (reason or cluster.daemons["ams"].monitor.states[key].reason)
    # /v1/status and `geodns status` name every vantage's word.
    api = f"http://127.0.0.1:{cluster.http['ams']}"
    # Answers moved on two votes of three; the third vantage's probes fail within an interval.
    for _ in range(60):
        async with aiohttp.ClientSession() as session, session.get(api + "/v1/status") as response:
            doc = await response.json()
        par = next(m for m in doc["pools"][0]["members"] if m["dc"] == "par")
        if len(par["votes"]["down"]) == 3:
            break
        await asyncio.sleep(0.05)
    assert sorted(par["votes"]["down"]) == ["ams", "nyc", "par"] and par["votes"]["up"] == []
    assert (
        "3 of 3 vantages say down" in par["votes"]["summary"] and "par: HTTP 503" in par["votes"]["summary"]
    )
    shown = await asyncio.to_thread(run_geodns, "status", "--api", api)
    assert "votes: 3 of 3 vantages say down" in shown.stdout, shown.stdout
    told = await asyncio.to_thread(run_geodns, "explain", "www.example.test", "--api", api)
    assert "down: 3 of 3 vantages say down (" in told.stdout and "par: HTTP 503" in told.stdout, told.stdout


@pytest.mark.asyncio
async def test_a_silent_peer_stops_counting_and_the_endpoint_wants_the_token(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    await until(lambda: _all_counted(cluster), 5.0, "every peer counted everywhere")
    url = f"http://127.0.0.1:{cluster.http['par']}/v1/cluster/observations"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 401
        async with session.get(url, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with session.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["name"] == "par" and body["datacenter"] == "par" and len(body["targets"]) == 3
        async with session.get(f"http://127.0.0.1:{cluster.http['ams']}/v1/cluster") as response:
            doc = await response.json()
    assert {p["name"]: p["counted"] for p in doc["peers"]} == {"par": True, "nyc": True}
    assert all(p["same_config"] for p in doc["peers"])
    await cluster.daemons["nyc"].stop()
    par = cluster.daemons["par"].cluster
    assert par is not None
    await until(lambda: [s.peer.name for s in par.counted()] == ["ams"], 4.0, "nyc no longer counted by par")
    assert "peer nyc" in caplog.text
    # Two left, all up: answers unchanged.
    reply = await ask(cluster.dns("par"), "www.example.test.", "A")
    assert {rd.to_text() for rrset in reply.answer for rd in rrset} == {"127.0.0.9"}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "garbage",
    [
        b"not json",
        b"[]",
        b'{"name": "evil", "boot": "x", "seq": 1, "config_hash": "h", "targets": [["web"]]}',
        b'{"name": "evil", "boot": "x", "seq": "1"}',
        b'{"name": "evil", "boot": "x", "seq": 1, "config_hash": "h",'
        b' "targets": [["web", "1.2.3.4", 99999, "up", "", 0, 0]]}',
        b'{"name": "impostor", "boot": "x", "seq": 1, "config_hash": "h", "targets": []}',
        b"{" * 100_000,
        b'{"name": "evil", "pad": "' + b"x" * (16 * 1024 * 1024) + b'"}',  # over the 16 MiB limit
    ],
    ids=["not-json", "list", "short-row", "seq-string", "bad-port", "impostor", "deep", "huge"],
)
async def test_a_hostile_peer_is_not_counted_and_nothing_raises(
    tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def evil(_request: web.Request) -> web.Response:
        return web.Response(body=garbage, content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/cluster/observations", evil)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil_port = runner.addresses[0][1]
    backend = await HttpBackend("127.0.0.9").start()
    http = {dc: unused_port() for dc in DCS}
    ports = {dc: backend.port for dc in DCS}
    path = _config(
        tmp_path, "par", http, ports, f"    - {{name: evil, url: 'http://127.0.0.1:{evil_port}'}}\n"
    )
    daemon = Daemon(load(path))
    await daemon.start()
    try:
        assert daemon.cluster is not None
        await until(
            lambda: daemon.cluster is not None and daemon.cluster.peers["evil"].problem is not None,
            5.0,
            "a problem noted",
        )
        assert not any(s.peer.name == "evil" for s in daemon.cluster.counted())
        assert "cluster: peer evil: not counted" in caplog.text
        reply = await ask(
            Endpoint(daemon.dns_bound()[0].host, daemon.dns_bound()[0].port), "www.example.test.", "A"
        )
        assert reply.answer  # still answering from its own view
    finally:
        await daemon.stop()
        await backend.stop()
        await runner.cleanup()


def test_peers_without_a_token_are_refused_at_start(tmp_path: Path) -> None:
    http = {dc: unused_port() for dc in DCS}
    path = _config(tmp_path, "par", http, dict.fromkeys(DCS, 9))
    path.write_text(path.read_text().replace("  token_file: token\n", ""))
    with pytest.raises(GeoDnsError, match="no cluster token"):
        Daemon(load(path))
    (tmp_path / "par" / "token").chmod(0o644)
    path.write_text(path.read_text().replace("cluster:\n", "cluster:\n  token_file: token\n"))
    with pytest.raises(GeoDnsError, match="may be read or written by others"):
        Daemon(load(path))


@pytest.mark.asyncio
async def test_a_slow_peer_is_not_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(body=b"{}", content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/cluster/observations", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    backend = await HttpBackend("127.0.0.9").start()
    http = {dc: unused_port() for dc in DCS}
    path = _config(
        tmp_path,
        "par",
        http,
        dict.fromkeys(DCS, backend.port),
        f"    - {{name: slow, url: 'http://127.0.0.1:{runner.addresses[0][1]}'}}\n",
    )
    daemon = Daemon(load(path))
    await daemon.start()
    try:
        node = daemon.cluster
        assert node is not None
        # interval 0.5 s + timeout 1.5 s: the request gives up after 2 s.
        await until(lambda: node.peers["slow"].problem is not None, 5.0, "the slow peer given up on")
        assert "TimeoutError" in (node.peers["slow"].problem or "")
        assert not any(s.peer.name == "slow" for s in node.counted())
    finally:
        await daemon.stop()
        await backend.stop()
        await runner.cleanup()


@pytest.mark.asyncio
async def test_a_peer_with_another_config_is_shown_and_still_counted(cluster: Cluster) -> None:
    await until(lambda: _all_counted(cluster), 5.0, "every peer counted everywhere")
    nyc = cluster.daemons["nyc"]
    path = nyc.config.source
    path.write_text(path.read_text().replace("interval: 300ms", "interval: 400ms"))
    assert await nyc.reload()
    api = f"http://127.0.0.1:{cluster.http['par']}/v1/cluster"

    async def peers() -> dict[str, dict[str, object]]:
        async with aiohttp.ClientSession() as session, session.get(api) as response:
            return {p["name"]: p for p in (await response.json())["peers"]}

    for _ in range(60):
        seen = await peers()
        if seen["nyc"]["same_config"] is False:
            break
        await asyncio.sleep(0.1)
    assert seen["nyc"]["same_config"] is False and seen["nyc"]["counted"] is True
    assert seen["ams"]["same_config"] is True
    shown = await asyncio.to_thread(run_geodns, "cluster", "--api", f"http://127.0.0.1:{cluster.http['par']}")
    assert "peer nyc [nyc]" in shown.stdout and "config differs" in shown.stdout, shown.stdout
