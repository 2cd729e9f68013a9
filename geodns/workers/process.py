"""A worker process as the operating system sees it: started with its control
socket, alive or not, and how it ended, in words."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
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
