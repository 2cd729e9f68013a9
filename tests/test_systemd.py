"""The systemd unit passes `systemd-analyze verify`, and geodns speaks the notify
protocol to a real datagram socket standing in for systemd: READY=1 once serving,
RELOADING=1 then READY=1 around SIGHUP, WATCHDOG=1 pings, STOPPING=1 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.configs import write_zone
from tests.conftest import REPO, needs

UNIT = REPO / "deploy" / "systemd" / "geodns.service"


@needs("systemd-analyze")
def test_the_unit_verifies(tmp_path: Path) -> None:
    # The unit names /usr/local/bin/geodns; verify checks the binary exists, so the copy
    # under test points at this checkout's.
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/geodns serve" in text
    geodns = Path(sys.executable).parent / "geodns"
    unit = tmp_path / "geodns.service"
    unit.write_text(text.replace("/usr/local/bin/geodns", str(geodns)))
    run = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr
    for needed in (
        "Type=notify",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=geodns",
        "ConfigurationDirectory=geodns",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
    ):
        assert f"\n{needed}\n" in text, needed


def _config(tmp_path: Path) -> Path:
    write_zone(tmp_path, "  www: {type: A, value: 192.0.2.80}\n")
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 1}\n'
        "datacenters: {par: {}}\n"
        "checks: {web: {type: tcp, port: 9, interval: 1s, timeout: 200ms}}\n"
        "pools:\n  web: {check: web, members: [{address: 127.0.0.91, dc: par}]}\n"
    )
    return tmp_path / "geodns.yaml"


async def _next(sock: socket.socket, timeout: float = 10.0) -> dict[str, str]:
    loop = asyncio.get_running_loop()
    data = await asyncio.wait_for(loop.sock_recv(sock, 4096), timeout)
    return dict(line.split("=", 1) for line in data.decode().split("\n"))


async def _until(sock: socket.socket, key: str) -> dict[str, str]:
    """The next message carrying `key` (watchdog pings may come between)."""
    while True:
        message = await _next(sock)
        if key in message:
            return message


@pytest.mark.asyncio
async def test_geodns_tells_systemd_ready_reloading_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "geodns",
            "serve",
            "-c",
            str(_config(tmp_path)),
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "NOTIFY_SOCKET": str(path),
                "WATCHDOG_USEC": "400000",
            },
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            ready = await _until(sock, "READY")
            assert ready["READY"] == "1" and ready["MAINPID"] == str(proc.pid)
            assert ready["STATUS"].startswith("serving 1 zone(s)")
            pings = [await _until(sock, "WATCHDOG") for _ in range(3)]  # every 0.2 s
            assert all(p["WATCHDOG"] == "1" for p in pings)

            proc.send_signal(signal.SIGHUP)
            reloading = await _until(sock, "RELOADING")
            assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
            again = await _until(sock, "READY")
            assert again["STATUS"].startswith("serving 1 zone(s)") and "FAILED" not in again["STATUS"]

            (tmp_path / "geodns.yaml").write_text("pools: [broken\n")
            proc.send_signal(signal.SIGHUP)
            await _until(sock, "RELOADING")
            failed = await _until(sock, "READY")
            assert "the last reload FAILED" in failed["STATUS"]

            proc.send_signal(signal.SIGTERM)
            stopping = await _until(sock, "STOPPING")
            assert stopping["STOPPING"] == "1"
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
