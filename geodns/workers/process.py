"""A worker process as the operating system sees it: started with its control
socket, alive or not, and how it ended, in words."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from geodns.workers.child import CONTROL_FD

log = logging.getLogger(__name__)


def spawn(index: int) -> tuple[int, socket.socket]:
    """Start worker `index` with its end of a new control socket as fd 3."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "geodns.workers.child", str(index), str(log.getEffectiveLevel())],
            dict(os.environ),
            file_actions=[(os.POSIX_SPAWN_DUP2, theirs.fileno(), CONTROL_FD)],
            setsid=True,  # its own session: a terminal's Ctrl-C is ours to pass on
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return pid, ours


def alive(pid: int) -> bool:
    """Running (not a zombie), without reaping it: its status is `reaped`'s to collect."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def described(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass(frozen=True)
class Usage:
    """What a worker process costs, as the kernel counts it."""

    cpu_seconds: float  # user + system since the process started
    resident_bytes: int
    open_fds: int


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def usage(pid: int) -> Usage | None:
    """CPU, memory and descriptors of a running process from /proc (the main
    process's own `process_*` metrics do not see its workers); None when it is gone
    or there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError, ValueError):
        return None
    # After the command: state is field 0, utime 11, stime 12 (proc(5) fields 3, 14, 15).
    return Usage((int(fields[11]) + int(fields[12])) / _TICKS, resident_pages * _PAGE, fds)
