"""The daemon's health monitoring end to end: real backends on 127.0.0.x,
real probes, state visible in the log, /v1/status, /metrics and DNS answers."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from geodns.config import load
from geodns.daemon import Daemon
from geodns.health.health import Health, ProbeKey, Status
from tests.backends import HostileServer, HttpBackend
from tests.configs import write_zone
from tests.dnsclient import Endpoint, ask

INTERVAL, TIMEOUT, RISE, FALL = 0.2, 0.1, 2, 3


def write_config(tmp: Path, ports: list[int], timeout: float = TIMEOUT, interval: float = INTERVAL) -> Path:
    write_zone(tmp, "  www: {type: A, pool: web}\n")
    main = tmp / "geodns.yaml"
    main.write_text(f"""\
server: {{dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state}}
datacenters: {{par: {{}}, ams: {{}}}}
checks:
  web:
    type: http
    path: /health
    expect_body: "/^OK$/"
    interval: {int(interval * 1000)}ms
    timeout: {int(timeout * 1000)}ms
    rise: {RISE}
    fall: {FALL}
    jitter: 0s
pools:
  web:
    check: web
    policy: all
    members:
      - {{address: 127.0.0.51, dc: par, check_port: {ports[0]}}}
      - {{address: 127.0.0.52, dc: ams, check_port: {ports[1]}}}
  web-par:                     # shares its probe with web's first member
    check: web
    members: [{{address: 127.0.0.51, dc: par, check_port: {ports[0]}}}]
""")
    return main


class Running:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        dns = daemon.dns_bound()[0]
        self.dns = Endpoint(dns.host, dns.port)
        assert daemon.admin is not None and daemon.admin.bound is not None
        self.http = f"http://{daemon.admin.bound.host}:{daemon.admin.bound.port}"

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(self.http + path) as resp:
            return resp.status, await resp.text()

    async def status_of(self, address: str, pool: str = "web") -> dict[str, object]:
        async with aiohttp.ClientSession() as session, session.get(self.http + "/v1/status") as resp:
            doc = await resp.json()
        members = next(p for p in doc["pools"] if p["name"] == pool)["members"]
        member: dict[str, object] = next(m for m in members if m["address"] == address)
        return member

    async def www(self) -> set[str]:
        msg = await ask(self.dns, "www.example.test.", "A")
        return {rd.to_text() for rrset in msg.answer for rd in rrset}

    async def www_within(self, expected: set[str], seconds: float = 0.05) -> set[str]:
        """The answer once a change seen in /v1/status has reached DNS: at once when
        this process answers, within 50 ms from DNS worker processes (the change
        crosses a socket to each). Anything else after that is a failure."""
        deadline = time.monotonic() + seconds
        while True:
            got = await self.www()
            if got == expected or time.monotonic() >= deadline:
                return got
            await asyncio.sleep(0.005)


async def wait_for(condition: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll until `condition` holds; return how long it took (bounded by `within`)."""
    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[list[HttpBackend]]:
    started = [await HttpBackend("127.0.0.51").start(), await HttpBackend("127.0.0.52").start()]
    try:
        yield started
    finally:
        for b in started:
            await b.stop()


async def start(config_path: Path) -> Running:
    daemon = Daemon(load(config_path))
    await daemon.start()
    return Running(daemon)


@pytest.mark.asyncio
async def test_killing_a_backend_flips_it_down_everywhere(
    tmp_path: Path, backends: list[HttpBackend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="geodns")
    run = await start(write_config(tmp_path, [b.port for b in backends]))
    try:
        await wait_for(lambda: _ready(run), within=3)
        assert await run.www() == {"127.0.0.51", "127.0.0.52"}
        assert (await run.get("/readyz"))[0] == 200

        await backends[0].stop()
        took = await wait_for(lambda: _state(run, "127.0.0.51", "down"), within=5)
        assert took <= INTERVAL * FALL + TIMEOUT + 1.0

        assert await run.www_within({"127.0.0.52"}) == {"127.0.0.52"}
        lines = [r.getMessage() for r in caplog.records if "up -> down" in r.getMessage()]
        assert any(
            line.startswith(
                "member 127.0.0.51 (par, pool web): up -> down after 3 failures: cannot connect to"
            )
            for line in lines
        ), lines
        assert any(line.startswith("member 127.0.0.51 (par, pool web-par): up -> down") for line in lines)
        member = await run.status_of("127.0.0.51")
        assert member["state"] == "down" and str(member["reason"]).startswith("cannot connect to 127.0.0.51")
        assert member["since"] is not None and member["last_probe_ok"] is False
        _, metrics = await run.get("/metrics")
        assert 'geodns_member_up{dc="par",member="127.0.0.51",pool="web"} 0.0' in metrics
        assert 'geodns_member_up{dc="ams",member="127.0.0.52",pool="web"} 1.0' in metrics
        assert 'geodns_state_changes_total{member="127.0.0.51",pool="web",to="down"} 1.0' in metrics
        assert 'geodns_probe_failures_total{check="web",reason="refused"}' in metrics
        assert "geodns_probe_duration_seconds_bucket" in metrics

        # Everything down: the pool fails open (fallback: all) rather than answering nothing.
        await backends[1].stop()
        await wait_for(lambda: _state(run, "127.0.0.52", "down"), within=5)
        assert await run.www_within({"127.0.0.51", "127.0.0.52"}) == {"127.0.0.51", "127.0.0.52"}

        # Back up after `rise` good probes.
        await backends[0].start(port=int(str((await run.status_of("127.0.0.51"))["probe"]["port"])))  # type: ignore[index]
        took = await wait_for(lambda: _state(run, "127.0.0.51", "up"), within=5)
        assert took <= INTERVAL * RISE + TIMEOUT + 1.0
        assert await run.www_within({"127.0.0.51"}) == {"127.0.0.51"}
    finally:
        await run.daemon.stop()


@pytest.mark.asyncio
async def test_200_with_error_body_is_down(tmp_path: Path, backends: list[HttpBackend]) -> None:
    backends[1].behaviour.body = "ERROR"
    run = await start(write_config(tmp_path, [b.port for b in backends]))
    try:
        await wait_for(lambda: _state(run, "127.0.0.52", "down"), within=3)
        member = await run.status_of("127.0.0.52")
        assert member["reason"] == "HTTP 200 body did not match /^OK$/: 'ERROR'"
        assert await run.www_within({"127.0.0.51"}) == {"127.0.0.51"}
    finally:
        await run.daemon.stop()


@pytest.mark.asyncio
async def test_flapping_backend_does_not_flap_the_answer(tmp_path: Path, backends: list[HttpBackend]) -> None:
    backends[0].behaviour.flap = True  # 200, 503, 200, 503, ...
    run = await start(write_config(tmp_path, [b.port for b in backends]))
    try:
        await wait_for(lambda: _ready(run), within=3)
        answers = set()
        for _ in range(40):  # ~2 s: about ten probes of the flapping backend
            answers.add(frozenset(await run.www()))
            await asyncio.sleep(0.05)
        assert backends[0].requests >= 6
        assert answers == {frozenset({"127.0.0.51", "127.0.0.52"})}
        _, metrics = await run.get("/metrics")
        assert 'to="down"' not in metrics
    finally:
        await run.daemon.stop()


@pytest.mark.asyncio
async def test_shared_targets_are_probed_once(tmp_path: Path, backends: list[HttpBackend]) -> None:
    run = await start(write_config(tmp_path, [b.port for b in backends]))
    try:
        assert len(run.daemon.monitor.targets) == 2  # three members, two unique probes
        await asyncio.sleep(1.0)
        shared, single = backends[0].requests, backends[1].requests
        assert single >= 3
        assert abs(shared - single) <= 2, (shared, single)  # not twice as many
    finally:
        await run.daemon.stop()


@pytest.mark.asyncio
async def test_no_answer_before_every_member_has_a_result(
    tmp_path: Path, backends: list[HttpBackend]
) -> None:
    """Start-up holds DNS back until the first probes answer (a hang: one timeout),
    so the very first query is already answered from real states."""
    backends[1].behaviour.hang = True
    run = await start(write_config(tmp_path, [b.port for b in backends], timeout=1.0, interval=2.0))
    try:
        assert await run.www() == {"127.0.0.51"}  # the hanging member is already out
        member = await run.status_of("127.0.0.52")
        assert member["state"] == "down" and member["reason"] == "no answer within 1s"
        assert (await run.get("/readyz"))[0] == 200
    finally:
        await run.daemon.stop()


@pytest.mark.asyncio
async def test_restart_during_an_outage_keeps_the_dead_site_out(
    tmp_path: Path, backends: list[HttpBackend]
) -> None:
    config = write_config(tmp_path, [b.port for b in backends], timeout=1.0, interval=2.0)
    backends[0].behaviour.status = 503
    run = await start(config)
    try:
        await wait_for(lambda: _state(run, "127.0.0.51", "down"), within=3)
    finally:
        await run.daemon.stop()
    assert (tmp_path / "state" / "health.json").is_file()

    # Restart while the dead site's probes hang: until they answer, the last known state holds.
    backends[0].behaviour.hang = True
    run = await start(config)
    try:
        member = await run.status_of("127.0.0.51")
        assert member["state"] == "down" and member["restored"] is True
        assert await run.www() == {"127.0.0.52"}
        # Restored states let answers start at once, but readiness waits for fresh probes.
        status, body = await run.get("/readyz")
        assert status == 503 and f"waiting for web 127.0.0.51:{backends[0].port}" in body
    finally:
        await run.daemon.stop()


async def _ready(run: Running) -> bool:
    return run.daemon.monitor.ready()


async def _state(run: Running, address: str, want: str) -> bool:
    key = next(k for k in run.daemon.monitor.states if k.address == address)
    return run.daemon.store.current().status(key) is Status(want)


@pytest.mark.asyncio
async def test_a_monitor_bug_fails_the_target_loudly_and_probing_goes_on(
    tmp_path: Path, backends: list[HttpBackend], caplog: pytest.LogCaptureFixture
) -> None:
    run = await start(write_config(tmp_path, [b.port for b in backends]))
    monitor = run.daemon.monitor
    original = monitor._probe_once
    calls = 0

    async def broken(target: object, *, first: bool = False) -> bool:
        nonlocal calls
        calls += 1
        if calls <= 8:
            raise RuntimeError("bug in the monitor")
        return await original(target, first=first)  # type: ignore[arg-type]

    try:
        await monitor.stop()
        monitor._probe_once = broken  # type: ignore[method-assign]
        monitor.targets = {k: dataclasses.replace(t, task=None) for k, t in monitor.targets.items()}
        monitor.states = {k: Health() for k in monitor.states}
        monitor._pending = set(monitor.states)
        await monitor.start()
        await wait_for(lambda: _state(run, "127.0.0.51", "down"), within=3)
        member = await run.status_of("127.0.0.51")
        assert member["reason"] == "monitor error: RuntimeError: bug in the monitor"
        assert any("monitor error probing" in r.getMessage() for r in caplog.records)
        # Once the bug stops firing, real probes bring the member back.
        await wait_for(lambda: _state(run, "127.0.0.51", "up"), within=5)
    finally:
        await run.daemon.stop()


@pytest.mark.asyncio
async def test_hostile_backends_cost_their_neighbours_nothing(tmp_path: Path) -> None:
    """An endless chunk line, endless headers, a 100 MB body and a 1-byte-per-tick
    trickle, probed every 400 ms beside a healthy backend: the hostile ones go down
    with their reasons, the healthy one never leaves `up`, DNS keeps answering."""
    healthy = await HttpBackend("127.0.0.51").start()
    hostile = {
        mode: await HostileServer(f"127.0.0.{53 + i}", mode, pace=0.05, seconds=4).start()
        for i, mode in enumerate(("endless-chunk", "endless-headers", "huge", "trickle"))
    }
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    members = [f"{{address: 127.0.0.51, dc: par, check_port: {healthy.port}}}"] + [
        f"{{address: {s.host}, dc: ams, check_port: {s.port}}}" for s in hostile.values()
    ]
    (tmp_path / "geodns.yaml").write_text(f"""\
server: {{dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state}}
datacenters: {{par: {{}}, ams: {{}}}}
checks:
  web: {{type: http, path: /health, expect_body: "OK", interval: 400ms, timeout: 300ms, rise: 2, fall: 2}}
pools:
  web:
    check: web
    policy: all
    members: [{", ".join(members)}]
""")
    run = await start(tmp_path / "geodns.yaml")
    try:
        await wait_for(lambda: _ready(run), within=3)
        answered = 0
        for _ in range(60):  # ~3 s, seven probes of each backend
            assert "127.0.0.51" in await run.www()
            answered += 1
            await asyncio.sleep(0.05)
        assert answered == 60
        assert run.daemon.monitor.states[_key(run, "127.0.0.51")].status is Status.UP
        reasons = {
            mode: str((await run.status_of(server.host))["reason"]) for mode, server in hostile.items()
        }
        assert reasons["endless-chunk"] == "bad HTTP response: no complete response within 256 KiB"
        assert reasons["endless-headers"] == "bad HTTP response: response headers longer than 16 KiB"
        assert reasons["trickle"] == "no answer within 0.3s"
        assert (await run.status_of("127.0.0.55"))["state"] == "up"  # 100 MB, but its first 64 KiB say OK
        _, metrics = await run.get("/metrics")
        assert 'geodns_state_changes_total{member="127.0.0.51",pool="web",to="down"}' not in metrics
    finally:
        await run.daemon.stop()
        await healthy.stop()
        for server in hostile.values():
            await server.stop()


def _key(run: Running, address: str) -> ProbeKey:
    return next(k for k in run.daemon.monitor.states if k.address == address)
