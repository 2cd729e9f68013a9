"""The processes of exec checks: spawned, watched, reaped, and killed when they escape.

asyncio's subprocess support waits for the command's output to end, so a check
that leaves a background child holding stdout "times out" although it exited;
it reaps only its direct children, so as PID 1 (a container without an init)
every orphan of a check stays a zombie; and a descendant that calls setsid()
leaves the process group a timeout kills. Here:
- a command is started with posix_spawn in its own session, and watched through
  a pidfd: it is done when it exits, whatever holds its output pipe;
- geodns is a child subreaper (prctl), so descendants orphaned by a check become
  its children instead of init's;
- a sweep after every exec probe (and every second while exec checks exist)
  kills our orphaned children that carry this daemon's token in their
  environment and whose session is not a running check's, then reaps them;
  as PID 1 it also reaps every other zombie the kernel hands it.
Linux only, as the rest of geodns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "GEODNS_PROBE_TOKEN"  # noqa: S105 - a variable's name; its value marks our processes
_PR_SET_CHILD_SUBREAPER = 36


class Reaper:
    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self.running: set[int] = set()  # exec checks' main processes (each leads its own session)
        self.killed = 0  # escaped descendants killed
        self.statuses: dict[int, int] = {}  # our checks' exits reaped by a PID 1 sweep
        self.children: set[int] = set()  # other children of ours (DNS workers): statuses kept too
        self._unreaped: set[int] = set()
        self.subreaper = False
        self._reported_at = -1e9
        self._reported_count = 0

    def enable_subreaper(self) -> bool:
        if self.subreaper:
            return True
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            self.subreaper = True
        except (OSError, AttributeError) as exc:
            log.warning("cannot become a child subreaper (%s): exec checks' orphans go to init", exc)
        return self.subreaper

    def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, int]:
        """Start a command in its own session, stdout and stderr into one pipe:
        (pid, the pipe's read end, non-blocking)."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.posix_spawnp(
                argv[0],
                list(argv),
                {**env, TOKEN_VARIABLE: self.token},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, write_end, 1),
                    (os.POSIX_SPAWN_DUP2, write_end, 2),
                ],
                setsid=True,
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        os.set_blocking(read_end, False)
        self.running.add(pid)
        return pid, read_end

    def exit_code(self, pid: int) -> int | None:
        """The exit code (negative: killed by that signal) once `pid` exited, reaped here."""
        if pid in self.statuses:
            return self.statuses.pop(pid)
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return self.statuses.pop(pid, -1)
        return os.waitstatus_to_exitcode(status) if done else None

    def finished(self, pid: int, *, kill: bool) -> None:
        """A check's main process is done with: kill its session if asked (timeout),
        reap it when it can be, and sweep for whatever it left behind."""
        self.running.discard(pid)
        if kill:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if self.exit_code(pid) is None:
            self._unreaped.add(pid)
        self.sweep()
        # A killed session takes a moment to die, and only then are its orphans ours:
        # look again shortly rather than a whole sweep period later.
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for delay in (0.02, 0.1, 0.5):
                loop.call_later(delay, self._safe_sweep)

    def _safe_sweep(self) -> None:
        try:
            self.sweep()
        except Exception:
            log.exception("process sweep failed; will try again")

    def sweep(self) -> None:
        """Kill escaped descendants and reap what can be reaped; never blocks."""
        sessions = set(self.running)
        for pid in _children():
            if pid in self.running or pid in self._unreaped:
                continue
            if _session(pid) in sessions or not self._ours(pid):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                self.killed += 1
                self._report(pid)
            self._unreaped.add(pid)
        for pid in list(self._unreaped):
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(pid, os.WNOHANG)
                if not done:
                    continue
            self._unreaped.discard(pid)
        if os.getpid() == 1:
            self._reap_all()

    def _report(self, pid: int) -> None:
        """Say it once a minute, with a count: a check that always leaves a child
        behind must not write a line per probe."""
        now = time.monotonic()
        if now - self._reported_at >= 60.0:
            since = self.killed - self._reported_count
            log.warning(
                "killed process %d left behind by an exec check (%d such processes killed since the last"
                " report); exec commands should not leave children running",
                pid,
                since,
            )
            self._reported_at, self._reported_count = now, self.killed

    async def sweep_every(self, seconds: float) -> None:
        """Sweeps on a timer: orphans of a check can appear after it ended (a
        double fork with a delay), and as PID 1 anyone's orphans arrive any time."""
        while True:
            await asyncio.sleep(seconds)
            self._safe_sweep()

    def _reap_all(self) -> None:
        """As PID 1 every orphan on the system is ours to reap: keep our checks'
        statuses for their probes, drop the rest."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._unreaped.discard(pid)
            if pid in self.running or pid in self.children:
                self.statuses[pid] = os.waitstatus_to_exitcode(status)

    def _ours(self, pid: int) -> bool:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"{TOKEN_VARIABLE}={self.token}".encode() in environ.split(b"\0")


def _children() -> list[int]:
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError):
                pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def _session(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[3])  # after the name: state, ppid, pgrp, session


REAPER = Reaper()  # one per process: subreaping and PID 1 duties are process-wide
POLL = 0.02  # seconds between exit checks where pidfds are missing


async def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    keep: int = 4096,
    limit: int = 1024 * 1024,
    nice: int = 0,
) -> Watch:
    """Run a command to its exit (not its output's end); cancelling kills its whole
    session. The returned Watch holds the exit code, the output kept and whether
    there was more than `limit`. `nice` lowers its CPU priority (background work
    that must not compete with answers). Raises OSError when it cannot be started."""
    pid, output_fd = REAPER.spawn(argv, env)
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, nice)
    watch = Watch(pid, output_fd, keep=keep, limit=limit)
    done = False
    try:
        watch.code = await watch.exit()
        done = True
    finally:
        watch.close()
        REAPER.finished(pid, kill=not done)
    return watch


class Watch:
    """One running command: its output read as it comes, its exit awaited."""

    code: int | None = None

    def __init__(self, pid: int, output_fd: int, *, keep: int = 4096, limit: int = 1024 * 1024) -> None:
        self.pid = pid
        self.fd: int | None = output_fd
        self.keep = keep  # bytes of output kept: the last ones
        self.limit = limit  # bytes read at most; then the pipe is closed on the command
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
        del self.tail[: -self.keep]
        if self.read > self.limit:
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
            code = await reaped(self.pid)
        # What the command wrote before exiting and is already in the pipe: not a byte more.
        for _ in range(self.limit // 65536 + 1):
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


async def reaped(pid: int) -> int:
    """The exit code of a process that exited (or will): reaping may trail the
    pidfd by a moment, and without pidfds there is nothing to wait on but time."""
    while (code := REAPER.exit_code(pid)) is None:  # noqa: ASYNC110 - a kernel state, no event to await
        await asyncio.sleep(POLL)
    return code
