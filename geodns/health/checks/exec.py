"""Exec checks: run a command with the target in its environment; exit 0 is up.

The command runs in its own session. It is done when it exits (watched through
a pidfd), not when its output ends: a background child holding stdout does not
turn a finished check into a timeout. Output is read as it comes, the last 4 KiB
kept for the reason, and no more than 1 MiB read in all (then the pipe is closed
on the command). A timeout kills the whole session; whatever escapes it is found
and killed by the reaper (see reaper.py).
"""

from __future__ import annotations

import os

from geodns.config.model import Check
from geodns.health.checks.base import OK, ProbeResult, Target, excerpt, failed, os_failure
from geodns.health.checks.reaper import run_command

OUTPUT_TAIL = 4096
MAX_OUTPUT = 1024 * 1024


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
            run = await run_command(self.check.command, env, keep=OUTPUT_TAIL, limit=MAX_OUTPUT)
        except OSError as exc:
            return os_failure(exc, "exec", f"cannot run {self.check.command[0]!r}")
        tail = excerpt(bytes(run.tail))
        if run.overflow:
            return failed("exec", f"wrote more than {MAX_OUTPUT // 1024} KiB of output: {tail}")
        code = run.code
        if code == 0:
            return OK
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return failed("exec", f"{how}: {tail}" if tail else how)

    async def close(self) -> None:
        return None
