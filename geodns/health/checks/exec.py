"""Exec checks: run a command with the target in its environment; exit 0 is up.

The command runs in its own session. It is done when it exits (watched through
a pidfd), not when its output ends: a background child holding stdout does not
turn a finished check into a timeout. Output is read as it comes, the last 4 KiB
kept for the reason, and no more than 1 MiB read in all (then the pipe is closed
on the command). A timeout kills the whole session; whatever escapes it is found
and killed by the reaper (see reaper.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from geodns.config.model import Check
from geodns.health.checks.base import OK, ProbeResult, Target, excerpt, failed, os_failure
from geodns.health.checks.reaper import REAPER

OUTPUT_TAIL = 4096
MAX_OUTPUT = 1024 * 1024
POLL = 0.02  # seconds between exit checks where pidfds are missing


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
            pid, output_fd = REAPER.spawn(self.check.command, env)
        except OSError as exc:
            return os_failure(exc, "exec", f"cannot run {self.check.command[0]!r}")
        watch = _Watch(pid, output_fd)
        timed_out = True
        try:
            code = await watch.exit()
            timed_out = False
        finally:
            watch.close()
            REAPER.finished(pid, kill=timed_out)
        if watch.overflow:
            tail = excerpt(bytes(watch.tail))
            return failed("exec", f"wrote more than {MAX_OUTPUT // 1024} KiB of output: {tail}")
        if code == 0:
            return OK
        how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
        tail = excerpt(bytes(watch.tail))
        return failed("exec", f"{how}: {tail}" if tail else how)

    async def close(self) -> None:
        return None


class _Watch:
    """One running command: its output read as it comes, its exit awaited."""

    def __init__(self, pid: int, output_fd: int) -> None:
        self.pid = pid
        self.fd: int | None = output_fd
        self.tail = bytearray()
        self.read = 0
        self.overflow = False
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(output_fd, self._on_output)

    def _on_output(self) -> None:
        if self.fd is None:
            return
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._stop_reading()
            return
        self.read += len(data)
        self.tail += data
        del self.tail[:-OUTPUT_TAIL]
        if self.read > MAX_OUTPUT:
            self.overflow = True
            self._stop_reading()  # the command's next write fails: it cannot make us read forever

    def _stop_reading(self) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None

    async def exit(self) -> int:
        code = REAPER.exit_code(self.pid)
        if code is None:
            try:
                pidfd: int | None = os.pidfd_open(self.pid)
            except OSError:
                pidfd = None  # no pidfds here, or already reaped by a PID 1 sweep
            if pidfd is not None:
                exited: asyncio.Future[None] = self.loop.create_future()
                self.loop.add_reader(pidfd, _resolve, exited)
                try:
                    await exited
                finally:
                    self.loop.remove_reader(pidfd)
                    os.close(pidfd)
            code = await _reaped(self.pid)
        # What the command wrote before exiting and is already in the pipe: not a byte more.
        for _ in range(MAX_OUTPUT // 65536 + 1):
            if self.fd is None:
                break
            before = self.read
            self._on_output()
            if self.read == before:
                break
        return code

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stop_reading()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _reaped(pid: int) -> int:
    """The exit code of a process that exited (or will): reaping may trail the
    pidfd by a moment, and without pidfds there is nothing to wait on but time."""
    while (code := REAPER.exit_code(pid)) is None:  # noqa: ASYNC110 - a kernel state, no event to await
        await asyncio.sleep(POLL)
    return code
