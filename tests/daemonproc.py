"""`geodns serve` as a real process for end-to-end tests: free ports, log capture."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO
from tests.dnsclient import Endpoint

LISTEN = re.compile(r"DNS listening on (\S+):(\d+) ")
HTTP = re.compile(r"HTTP listening on http://(\S+):(\d+)/")


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    dns: Endpoint
    http: Endpoint
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.log:
                    if needle in line:
                        return line
                await asyncio.sleep(0.02)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            await self.reader

    async def stop(self) -> int:
        """SIGTERM and wait: the graceful path, as an operator would."""
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout=10)
        if self.reader is not None:
            await self.reader
        return code


async def serve_process(
    config: Path,
    dns_listen: str,
    env: dict[str, str] | None = None,
    command: str = "serve",
    http_listen: str = "127.0.0.1:0",
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "geodns",
        command,
        "-c",
        str(config),
        "--dns-listen",
        dns_listen,
        "--http-listen",
        http_listen,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )


async def spawn(
    config: Path,
    env: dict[str, str] | None = None,
    command: str = "serve",
    *,
    dns: bool = True,
    http_listen: str = "127.0.0.1:0",
) -> Proc:
    """Start `geodns serve` (or `demo`) on free ports; returns once its listeners are up
    (with dns=False, for route53 mode, only the HTTP one)."""
    proc = await serve_process(config, "127.0.0.1:0", env, command, http_listen)
    assert proc.stderr is not None
    log: list[str] = []
    dns_ep = http_ep = None
    async with asyncio.timeout(20):
        while (dns and dns_ep is None) or http_ep is None:
            line = (await proc.stderr.readline()).decode()
            assert line, f"geodns exited early: {log}"
            log.append(line)
            if m := LISTEN.search(line):
                dns_ep = Endpoint(m.group(1), int(m.group(2)))
            if m := HTTP.search(line):
                http_ep = Endpoint(m.group(1), int(m.group(2)))
    running = Proc(proc, dns_ep or Endpoint("127.0.0.1", 0), http_ep, log)

    async def pump() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            log.append(line.decode())

    running.reader = asyncio.create_task(pump())
    return running


def run_geodns(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m geodns ARGS` to completion, as a user would run it (never raises on exit codes)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "geodns", *args],
        check=False,
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
