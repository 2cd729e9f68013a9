"""Failover end to end: backends in three datacenters on 127.0.0.x, the real
daemon process, a real DNS client polling. Kill a datacenter, watch answers
move within the configured bounds; steer by ECS and by source address; drain
through the API and the CLI and survive a restart; each fallback mode."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
import pytest_asyncio

from tests.backends import HttpBackend
from tests.configs import write_zone
from tests.daemonproc import Proc, run_geodns, spawn
from tests.dnsclient import Endpoint

INTERVAL, TIMEOUT, RISE, FALL = 0.3, 0.15, 2, 3
DCS = {"par": "127.0.0.61", "ams": "127.0.0.62", "nyc": "127.0.0.63"}
TOKEN = "s3cret-test-token"
RECORDS = """\
  www: {type: A, pool: web}
  geo: {type: A, pool: geo}
  empty: {type: A, pool: fb-empty}
  servfail: {type: A, pool: fb-servfail}
  chain: {type: A, pool: fb-chain}
  open: {type: A, pool: fb-all}
"""


def write_config(tmp: Path, ports: dict[str, int]) -> Path:
    write_zone(tmp, RECORDS)
    members = "\n".join(
        f"      - {{address: {DCS[dc]}, dc: {dc}, check_port: {ports[dc]}}}" for dc in ("par", "ams", "nyc")
    )
    dead = "check_port: 9"  # nothing listens there: always down
    (tmp / "geodns.yaml").write_text(f"""\
server: {{state_dir: state}}
datacenters: {{par: {{}}, ams: {{}}, nyc: {{}}}}
checks:
  web: {{type: http, path: /health, expect_body: OK, interval: {int(INTERVAL * 1000)}ms,
         timeout: {int(TIMEOUT * 1000)}ms, rise: {RISE}, fall: {FALL}, jitter: 0s}}
pools:
  web:
    check: web
    policy: failover
    datacenters: [par, ams, nyc]
    ttl: 30
    degraded_ttl: 5
    members:
{members}
  geo:
    check: web
    policy: geo
    datacenters: [par, ams, nyc]
    members:
{members}
  fb-empty: {{check: web, fallback: empty, members: [{{address: 127.0.0.71, dc: par, {dead}}}]}}
  fb-servfail: {{check: web, fallback: servfail, members: [{{address: 127.0.0.72, dc: par, {dead}}}]}}
  fb-chain: {{check: web, fallback: "pool:web", members: [{{address: 127.0.0.73, dc: par, {dead}}}]}}
  fb-all: {{check: web, fallback: all, members: [{{address: 127.0.0.74, dc: par, {dead}}}]}}
topology:
  - {{match: 198.51.100.0/24, prefer: [ams]}}
  - {{match: 127.0.5.0/24, prefer: [nyc]}}
""")
    return tmp / "geodns.yaml"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[str, HttpBackend]]:
    started = {dc: await HttpBackend(addr).start() for dc, addr in DCS.items()}
    try:
        yield started
    finally:
        for b in started.values():
            await b.stop()


def query(
    where: Endpoint, name: str, *, ecs: str | None = None, source: str | None = None
) -> dns.message.Message:
    options: list[dns.edns.Option] = []
    if ecs is not None:
        address, prefix = ecs.split("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    q = dns.message.make_query(name, "A", use_edns=0, options=options)
    return dns.query.udp(q, where.host, port=where.port, timeout=2, source=source)


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


async def answers_become(where: Endpoint, name: str, want: set[str], within: float) -> float:
    """Poll like a client would (every 20 ms); how long until the answer is `want`."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if addresses(await asyncio.to_thread(query, where, name)) == want:
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} did not become {want} within {within}s")


async def ready(proc: Proc) -> None:
    url = f"http://{proc.http.host}:{proc.http.port}/readyz"
    async with asyncio.timeout(10), aiohttp.ClientSession() as session:
        while True:
            async with session.get(url) as resp:
                if resp.status == 200:
                    return
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def daemon(tmp_path: Path, backends: dict[str, HttpBackend]) -> AsyncIterator[Proc]:
    config = write_config(tmp_path, {dc: b.port for dc, b in backends.items()})
    proc = await spawn(config, env={"GEODNS_API_TOKEN": TOKEN})
    await ready(proc)
    try:
        yield proc
    finally:
        await proc.kill()


@pytest.mark.asyncio
async def test_datacenter_failure_and_recovery_within_bounds(
    daemon: Proc, backends: dict[str, HttpBackend]
) -> None:
    assert addresses(query(daemon.dns, "www.example.test.")) == {DCS["par"]}
    port = backends["par"].port
    await backends["par"].stop()
    took = await answers_become(daemon.dns, "www.example.test.", {DCS["ams"]}, within=10)
    assert took <= INTERVAL * FALL + TIMEOUT + 1.0, took
    msg = query(daemon.dns, "www.example.test.")
    assert msg.answer[0].ttl == 5  # degraded: clients come back soon
    await daemon.wait_for_log("member 127.0.0.61 (par, pool web): up -> down after 3 failures")

    await backends["par"].start(port=port)
    took = await answers_become(daemon.dns, "www.example.test.", {DCS["par"]}, within=10)
    assert took <= INTERVAL * RISE + 1.0, took
    assert query(daemon.dns, "www.example.test.").answer[0].ttl == 30


@pytest.mark.asyncio
async def test_geo_steering_by_ecs_and_by_source(daemon: Proc) -> None:
    msg = query(daemon.dns, "geo.example.test.", ecs="198.51.100.0/24")
    assert addresses(msg) == {DCS["ams"]}
    ecs = next(o for o in msg.options if o.otype == dns.edns.ECS)
    assert (ecs.srclen, ecs.scopelen) == (24, 24)  # the rule's prefix, not a copy of the source
    msg = query(daemon.dns, "geo.example.test.", ecs="198.51.100.77/32")
    ecs = next(o for o in msg.options if o.otype == dns.edns.ECS)
    assert addresses(msg) == {DCS["ams"]} and (ecs.srclen, ecs.scopelen) == (32, 24)
    # No rule matches this subnet: the pool's own order, true for 200.0.0.0/5 (203 = 11001...,
    # the nearest rule 198.51.100.0/24 = 11000... parts at the fifth bit).
    msg = query(daemon.dns, "geo.example.test.", ecs="203.0.113.0/24")
    ecs = next(o for o in msg.options if o.otype == dns.edns.ECS)
    assert addresses(msg) == {DCS["par"]} and ecs.scopelen == 5
    # Without ECS the packet's source address steers, and no ECS comes back.
    msg = query(daemon.dns, "geo.example.test.", source="127.0.5.9")
    assert addresses(msg) == {DCS["nyc"]} and not msg.options
    assert addresses(query(daemon.dns, "geo.example.test.", source="127.0.6.9")) == {DCS["par"]}
    # A non-geo answer to an ECS query says scope 0: valid for everyone.
    msg = query(daemon.dns, "www.example.test.", ecs="198.51.100.0/24")
    assert next(o for o in msg.options if o.otype == dns.edns.ECS).scopelen == 0


@pytest.mark.asyncio
async def test_bad_ecs_is_formerr(daemon: Proc) -> None:
    q = dns.message.make_query(
        "geo.example.test.",
        "A",
        use_edns=0,
        options=[dns.edns.GenericOption(dns.edns.ECS, b"\x00\x01\x18\x00\xc6\x33\x64\x07")],
    )
    msg = dns.query.udp(q, daemon.dns.host, port=daemon.dns.port, timeout=2)
    assert msg.rcode() == dns.rcode.FORMERR  # 198.51.100.7 has bits set beyond /24


def cli(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    return run_geodns(*args, env={"GEODNS_API_TOKEN": token} if token else None, timeout=30)


@pytest.mark.asyncio
async def test_drain_via_cli_survives_restart(tmp_path: Path, daemon: Proc) -> None:
    api = f"http://{daemon.http.host}:{daemon.http.port}"
    config = str(tmp_path / "geodns.yaml")
    refused = await asyncio.to_thread(cli, "drain", "dc=par", "--api", api, "-c", config, token=None)
    assert refused.returncode == 2 and "HTTP 401" in refused.stderr
    typo = await asyncio.to_thread(cli, "drain", "dc=pra", "--api", api, "-c", config)
    assert typo.returncode == 2 and "no datacenter 'pra'" in typo.stderr

    done = await asyncio.to_thread(
        cli, "drain", "dc=par", "--reason", "power work", "--for", "2h", "--api", api, "-c", config
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dc=par forced down until ")
    assert addresses(query(daemon.dns, "www.example.test.")) == {DCS["ams"]}
    await daemon.wait_for_log(
        "member 127.0.0.61 (par, pool web): up -> down (forced down by dc=par: power work"
    )

    assert await daemon.stop() == 0
    again = await spawn(Path(config), env={"GEODNS_API_TOKEN": TOKEN})
    try:
        # Straight after start-up, before any probe could say otherwise: still drained.
        assert addresses(query(again.dns, "www.example.test.")) == {DCS["ams"]}
        api = f"http://{again.http.host}:{again.http.port}"
        status = await asyncio.to_thread(cli, "status", "--api", api, "-c", config)
        assert "override dc=par: forced down until" in status.stdout
        assert "DOWN (forced by dc=par; probes say" in status.stdout
        undone = await asyncio.to_thread(cli, "undrain", "dc=par", "--api", api, "-c", config)
        assert undone.returncode == 0 and "removed override dc=par" in undone.stdout
        await answers_become(again.dns, "www.example.test.", {DCS["par"]}, within=5)
    finally:
        await again.kill()


@pytest.mark.asyncio
async def test_fallback_modes_over_dns(daemon: Proc) -> None:
    msg = query(daemon.dns, "empty.example.test.")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer and msg.authority  # NODATA with SOA
    assert query(daemon.dns, "servfail.example.test.").rcode() == dns.rcode.SERVFAIL
    assert addresses(query(daemon.dns, "chain.example.test.")) == {DCS["par"]}  # pool:web answers
    assert addresses(query(daemon.dns, "open.example.test.")) == {"127.0.0.74"}  # fail open


@pytest.mark.asyncio
async def test_status_page_explain_and_api_errors(daemon: Proc) -> None:
    base = f"http://{daemon.http.host}:{daemon.http.port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base + "/") as resp:
            page = await resp.text()
            assert resp.status == 200 and "<title>geodns status</title>" in page
            assert 'src="static/status.js"' in page and 'href="static/status.css"' in page
        # The page's files are package data: the script polls the status document.
        async with session.get(base + "/static/status.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
            assert "v1/status" in await resp.text()
        async with session.get(base + "/static/status.css") as resp:
            assert resp.status == 200 and resp.content_type == "text/css"
        async with session.get(base + "/static/nothing.js") as resp:
            assert resp.status == 404
        async with session.get(
            base + "/v1/explain",
            params={"name": "geo.example.test", "client": "10.0.0.1", "ecs": "198.51.100.0/24"},
        ) as resp:
            doc = await resp.json()
            assert doc["answer"] == ["geo.example.test. 3600 IN A 127.0.0.62"]
            assert doc["pools"][0]["rule"] == {"rule": "198.51.100.0/24 -> ams", "prefer": ["ams"]}
            assert doc["ecs_scope"] == 24
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.post(
            base + "/v1/overrides", json={"target": "dc=par", "for": "soon"}, headers=headers
        ) as resp:
            assert resp.status == 400 and "bad duration" in (await resp.json())["error"]
        async with session.delete(base + "/v1/overrides/dc=ams", headers=headers) as resp:
            assert resp.status == 404
        async with session.post(
            base + "/v1/overrides", json={"target": "dc=nyc"}, headers={"Authorization": "Bearer wrong"}
        ) as resp:
            assert resp.status == 401
