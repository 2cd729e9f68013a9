"""Exec checks: run a command with the target in its environment; exit 0 is up.

The command runs in its own process group so that a timeout kills it and
everything it started (a shell script's children included)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from geodns.config.model import Check
from geodns.health.checks.base import OK, ProbeResult, Target, excerpt, failed, os_failure

OUTPUT_TAIL = 4096


class ExecProbe:
    def __init__(self, check: Check) -> None:
        self.check = check

    async def probe(self, target: Target) -> ProbeResult:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GEODNS_CHECK": self.check.name,
            "GEODNS_ADDRESS": target.address,
            "GEODNS_PORT": "" if target.port is None else str(target.port),
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.check.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return os_failure(exc, "exec", f"cannot run {self.check.command[0]!r}")
        try:
            output = await _read_tail(proc)
            code = await proc.wait()
        except BaseException:
            # Timeout (cancellation) or anything else: kill the whole group, reap it, re-raise.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        if code == 0:
            return OK
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        tail = excerpt(output)
        return failed("exec", f"{how}: {tail}" if tail else how)

    async def close(self) -> None:
        return None


async def _read_tail(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stdout is not None
    tail = b""
    while chunk := await proc.stdout.read(65536):
        tail = (tail + chunk)[-OUTPUT_TAIL:]
    return tail
