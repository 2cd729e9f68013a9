"""Reloads that never serve the past and never hold the answer loop: zone YAML
is compiled in a child process, unchanged zones are kept as they are, a SIGHUP
during a reload is followed by another reload, and a reload that fails for any
reason says why and keeps the running config."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import geodns.reloading
from geodns.config import load, recordlines, zonesdir
from geodns.daemon import Daemon
from tests.conftest import copy_test_config
from tests.daemonproc import Proc, spawn
from tests.dnsclient import Endpoint, ask

MAIL = "mail: {type: A, value: 192.0.2.25}"


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    return copy_test_config(tmp_path)


def set_mail(config: Path, address: str) -> None:
    zone = config.parent / "zones" / "example.test.yaml"
    text = zone.read_text()
    start = text.index("mail: {type: A, value: ")
    end = text.index("}", start) + 1
    zone.write_text(text[:start] + f"mail: {{type: A, value: {address}}}" + text[end:])


async def mail(where: Endpoint) -> set[str]:
    msg = await ask(where, "mail.example.test.", "A")
    return {rd.to_text() for rrset in msg.answer for rd in rrset}


@pytest_asyncio.fixture
async def daemon(config_copy: Path) -> AsyncIterator[Daemon]:
    running = Daemon(load(config_copy, use_cache=True))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def _where(daemon: Daemon) -> Endpoint:
    bound = next(a for a in daemon.dns_bound() if not a.family_v6)
    return Endpoint(bound.host, bound.port)


@pytest.mark.asyncio
async def test_a_changed_zone_is_compiled_elsewhere_and_the_others_are_kept(
    daemon: Daemon, config_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's own process never parses zone YAML on reload (a child does),
    and a zone whose input did not change is the very same object afterwards."""
    before = dict(daemon.config.zones.zones)
    parsed_here: list[str] = []
    real = recordlines.load_zone_text

    def spy(text: str, name: str, issues: Any) -> Any:
        parsed_here.append(name)
        return real(text, name, issues)

    monkeypatch.setattr(zonesdir, "load_zone_text", spy)
    set_mail(config_copy, "192.0.2.77")
    assert await daemon.reload()
    assert parsed_here == []
    assert await mail(_where(daemon)) == {"192.0.2.77"}
    after = daemon.config.zones.zones
    changed = ("example", "test")
    assert after[changed] is not before[changed]
    assert all(after[o] is before[o] for o in before if o != changed)


@pytest.mark.asyncio
async def test_a_reload_that_fails_inside_is_logged_and_changes_nothing(
    daemon: Daemon, config_copy: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="geodns")

    async def broken(*_args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(geodns.reloading, "compiled_zones", broken)
    set_mail(config_copy, "192.0.2.78")
    daemon.request_reload()
    assert daemon._reloading is not None
    await daemon._reloading
    assert "reload failed with an internal error; still serving the previous configuration" in caplog.text
    assert "disk on fire" in caplog.text
    assert await mail(_where(daemon)) == {"192.0.2.25"}


@pytest.mark.asyncio
async def test_sighups_during_a_reload_lead_to_the_latest_files(config_copy: Path) -> None:
    """Three edits and three SIGHUPs in quick succession, each arriving while a
    reload runs: the daemon ends up serving the last edit (a SIGHUP during a reload
    used to be dropped, serving the middle one until the next signal)."""
    proc: Proc = await spawn(config_copy)
    try:
        await proc.wait_for_log("serving 3 zone(s)")
        for address in ("192.0.2.81", "192.0.2.82", "192.0.2.83"):
            set_mail(config_copy, address)
            proc.proc.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.05)  # well inside the first reload (its compiler takes longer)
        await proc.wait_for_log("another one will follow it")
        async with asyncio.timeout(20):
            while await mail(proc.dns) != {"192.0.2.83"}:  # noqa: ASYNC110 - polling DNS answers
                await asyncio.sleep(0.1)
    finally:
        await proc.kill()


@pytest.mark.asyncio
async def test_a_reload_during_an_outage_never_answers_the_dead_site(tmp_path: Path) -> None:
    """par's backend answers 503 (down), ams's is fine. A reload that only changes
    the check's timeout used to reset both to unknown: every member unknown, the pool
    failed open and answered the dead site until new probes came back."""
    from tests.backends import HttpBackend
    from tests.configs import write_zone

    par, ams = await HttpBackend("127.0.0.71").start(), await HttpBackend("127.0.0.72").start()
    par.behaviour.status = 503
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    main = tmp_path / "geodns.yaml"

    def write(timeout: str) -> None:
        main.write_text(f"""\
server: {{dns_listen: ["127.0.0.1:0"], http_listen: null, state_dir: state}}
datacenters: {{par: {{}}, ams: {{}}}}
checks: {{web: {{type: http, interval: 1s, timeout: {timeout}, rise: 2, fall: 2}}}}
pools:
  web:
    check: web
    datacenters: [par, ams]
    members:
      - {{address: 127.0.0.71, dc: par, check_port: {par.port}}}
      - {{address: 127.0.0.72, dc: ams, check_port: {ams.port}}}
""")

    write("500ms")
    daemon = Daemon(load(main, use_cache=True))
    await daemon.start()
    try:

        async def answered() -> set[str]:
            # Over the wire: with DNS workers the answers are theirs, not this process's.
            msg = await ask(_where(daemon), "www.example.test.", "A")
            return {rd.to_text() for rrset in msg.answer for rd in rrset}

        assert await answered() == {"127.0.0.72"}
        for timeout in ("400ms", "300ms", "450ms"):
            write(timeout)
            assert await daemon.reload()
            assert await answered() == {"127.0.0.72"}  # at once, before any new probe has answered
            await asyncio.sleep(0.05)
            assert await answered() == {"127.0.0.72"}
    finally:
        await daemon.stop()
        await par.stop()
        await ams.stop()
