"""Every exit path of every command against the README's table: 0 ok; 1 something
outside failed (a port in use, the daemon unreachable or failing, the AWS API); 2
what the user gave is wrong (config, target, token). `plan` exits 2 only for
"changes pending", so each of its errors is 1 — it used to exit 2 ("changes
pending") when AWS could not be reached at all."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from tests.configs import write_zone
from tests.conftest import REPO
from tests.daemonproc import Proc, run_geodns, spawn
from tests.route53env import FAKE_AWS, Moto

ACCESS_DENIED = b"""<?xml version="1.0"?>
<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><Error><Type>Sender</Type>
<Code>AccessDenied</Code><Message>User: arn:aws:iam::123456789012:user/ops is not authorized to perform:
route53:GetHostedZone</Message></Error><RequestId>e1</RequestId></ErrorResponse>"""


def _route53_config(tmp: Path, endpoint: str, zone_id: str, name: str = "www.example.com.") -> Path:
    (tmp / "geodns.yaml").write_text(f"""\
server: {{mode: route53, state_dir: state, http_listen: "127.0.0.1:0"}}
datacenters: {{par: {{}}}}
checks: {{web: {{type: tcp, port: 9, interval: 2s, timeout: 300ms}}}}
pools:
  web: {{check: web, members: [{{address: 127.0.0.91, dc: par}}]}}
route53:
  endpoint_url: {endpoint}
  records:
    - {{name: {name}, hosted_zone_id: {zone_id}, pool: web}}
""")
    return tmp / "geodns.yaml"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _geodns(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run with exactly this environment (no AWS variables leaking in from ours)."""
    return subprocess.run(
        [sys.executable, "-m", "geodns", *args],
        check=False,
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _failed_cleanly(run: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


# --- plan and sync: the AWS API failing is an error (1), never "changes pending" (2)


def test_plan_exits_1_when_the_endpoint_cannot_be_reached(tmp_path: Path) -> None:
    _route53_config(tmp_path, f"http://127.0.0.1:{_closed_port()}", "Z1")
    run = _geodns("plan", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(run, 1, "get_hosted_zone", "Could not connect")


def test_plan_exits_1_without_credentials_and_says_so_at_once(tmp_path: Path) -> None:
    _route53_config(tmp_path, f"http://127.0.0.1:{_closed_port()}", "Z1")
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    run = _geodns("plan", "-c", "geodns.yaml", cwd=tmp_path, env=env)
    _failed_cleanly(run, 1, "Unable to locate credentials")
    sync = _geodns("sync", "--once", "-c", "geodns.yaml", cwd=tmp_path, env=env)
    _failed_cleanly(sync, 1, "Unable to locate credentials")


def test_plan_exits_1_on_an_unknown_hosted_zone(tmp_path: Path, moto: Moto) -> None:
    _route53_config(tmp_path, moto.url, "ZNOSUCHZONE")
    run = _geodns("plan", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(run, 1, "NoSuchHostedZone")


def test_plan_refuses_a_record_outside_its_hosted_zone_before_any_change(tmp_path: Path, moto: Moto) -> None:
    zone = moto.new_zone("example.com.")
    _route53_config(tmp_path, moto.url, zone, name="www.example.org.")
    run = _geodns("plan", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(run, 1, f"www.example.org. is not inside hosted zone {zone} (example.com.)")
    sync = _geodns("sync", "--once", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(sync, 1, "is not inside hosted zone")
    assert ("www.example.org.", "A", "geodns-par") not in moto.records(zone)


@pytest_asyncio.fixture
async def denying_endpoint() -> AsyncIterator[str]:
    """An HTTP endpoint answering every Route53 call 403 AccessDenied, as AWS does
    for credentials without the IAM policy."""

    async def deny(_request: web.Request) -> web.Response:
        return web.Response(status=403, body=ACCESS_DENIED, content_type="text/xml")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deny)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.asyncio
async def test_plan_exits_1_on_403(tmp_path: Path, denying_endpoint: str) -> None:
    _route53_config(tmp_path, denying_endpoint, "Z1")
    run = await asyncio.to_thread(_geodns, "plan", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(run, 1, "AccessDenied", "not authorized")


def test_plan_exits_1_on_an_invalid_config(tmp_path: Path) -> None:
    (tmp_path / "geodns.yaml").write_text("server: {mode: route53}\npools: 3\n")
    run = _geodns("plan", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(run, 1, "geodns.yaml:2:")
    check = _geodns("check", "-c", "geodns.yaml", cwd=tmp_path, env=FAKE_AWS)
    _failed_cleanly(check, 2, "geodns.yaml:2:")


def test_check_and_export_zone(tmp_path: Path) -> None:
    ok = run_geodns("check", "-c", str(REPO / "config" / "geodns.yaml"))
    assert ok.returncode == 0, ok.stderr
    unknown = run_geodns("export-zone", "-c", str(REPO / "config" / "geodns.yaml"), "nope.example.")
    _failed_cleanly(unknown, 2, "no zone 'nope.example.'")
    missing = run_geodns("check", "-c", str(tmp_path / "missing.yaml"))
    _failed_cleanly(missing, 2, "missing.yaml")


# --- commands that talk to the daemon


@pytest.fixture
def token_config(tmp_path: Path) -> Iterator[Path]:
    write_zone(tmp_path, "")
    token = tmp_path / "token"
    token.write_text("right-token\n")
    token.chmod(0o600)
    (tmp_path / "geodns.yaml").write_text(
        "server: {state_dir: state, api_token_file: token}\n"
        "datacenters: {par: {}, ams: {}}\n"
        "pools:\n  web: {members: [{address: 192.0.2.1, dc: par}, {address: 192.0.2.2, dc: ams}]}\n"
    )
    yield tmp_path / "geodns.yaml"


@pytest_asyncio.fixture
async def daemon(token_config: Path) -> AsyncIterator[Proc]:
    running = await spawn(token_config)
    try:
        yield running
    finally:
        await running.kill()


async def _cli(daemon: Proc, *args: str, token: str = "right-token") -> subprocess.CompletedProcess[str]:
    api = f"http://{daemon.http.host}:{daemon.http.port}"
    env = {"GEODNS_API_TOKEN": token}
    return await asyncio.to_thread(run_geodns, *args, "--api", api, env=env)


@pytest.mark.asyncio
async def test_api_commands_exit_codes(daemon: Proc) -> None:
    ok = await _cli(daemon, "drain", "dc=par", "--reason", "power work")
    assert ok.returncode == 0 and "dc=par forced down" in ok.stdout, ok.stderr
    wrong = await _cli(daemon, "drain", "dc=ams", token="wrong-token")
    _failed_cleanly(wrong, 2, "token rejected")
    typo = await _cli(daemon, "drain", "dc=pra")
    _failed_cleanly(typo, 2, "no datacenter 'pra' (datacenters: par, ams)")
    unknown = await _cli(daemon, "undrain", "dc=pra")
    _failed_cleanly(unknown, 2, "no datacenter 'pra' (datacenters: par, ams)")
    not_drained = await _cli(daemon, "undrain", "dc=ams")
    _failed_cleanly(not_drained, 2, "nothing to undrain: dc=ams has no override (active overrides: dc=par)")
    assert (await _cli(daemon, "undrain", "dc=par")).returncode == 0
    assert (await _cli(daemon, "status")).returncode == 0
    nothing_held = await _cli(daemon, "release")
    _failed_cleanly(nothing_held, 2, "no cluster section")


def test_api_commands_exit_1_when_the_daemon_is_unreachable(tmp_path: Path) -> None:
    for command in (["status"], ["drain", "dc=par"], ["undrain", "dc=par"], ["explain", "www.example.com"]):
        run = run_geodns(*command, "--api", f"http://127.0.0.1:{_closed_port()}", cwd=tmp_path)
        _failed_cleanly(run, 1, "cannot reach geodns at", "Connection refused")


def test_without_a_config_the_api_commands_try_the_default_listener(tmp_path: Path) -> None:
    """No -c and no config/geodns.yaml here: the daemon's default address on loopback,
    not "no HTTP API address"."""
    run = run_geodns("status", cwd=tmp_path)
    assert "http://127.0.0.1:8053" in run.stderr, run.stderr
    assert run.returncode in (0, 1) and "Traceback" not in run.stderr


@pytest.mark.asyncio
async def test_serve_exit_codes(tmp_path: Path, token_config: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: {web: {policy: failovr}}\n")
    invalid = await asyncio.to_thread(run_geodns, "serve", "-c", str(bad))
    _failed_cleanly(invalid, 2, "bad.yaml:1:")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        busy = await asyncio.to_thread(
            run_geodns, "serve", "-c", str(token_config), "--dns-listen", f"127.0.0.1:{port}"
        )
    _failed_cleanly(busy, 1, "address in use")
