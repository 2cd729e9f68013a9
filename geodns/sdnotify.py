"""systemd's notify protocol, for `Type=notify` units: READY=1 once the listeners
are up and every member has a state, RELOADING=1 / READY=1 around a SIGHUP reload,
STOPPING=1 on the way out, STATUS= lines `systemctl status` shows, and WATCHDOG=1
pings from the event loop when the unit sets WatchdogSec= (a loop that stalls stops
pinging, and systemd restarts the service).

A few datagrams on the socket named by $NOTIFY_SOCKET: no dependency. Without that
variable (not under systemd) every call does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address is not None and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]  # an abstract socket
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and ours else None
        self._task: asyncio.Task[None] | None = None

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:  # systemd gone, a wrong path: say it, never fail for it
            log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload it asked for.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def start_watchdog(self) -> None:
        """Ping at half the interval systemd allows, from the event loop itself."""
        if self.watchdog is not None and self.address is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pings(self.watchdog / 2))

    async def _pings(self, every: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(every)

    def stop_watchdog(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
