"""Limits on the HTTP API's connections, so the API cannot eat what probes need.

aiohttp caps neither the number of connections nor how long a client may take
to send a request. Every connection is an fd taken from the budget probes and DNS
over TCP share: 1,100 idle API connections used to make every probe fail with
"too many open files". Here each connection goes through a thin protocol that
forwards to aiohttp's and adds: a cap (at the cap, the connection idle longest is
closed to admit the new one, so an operator still gets in while someone holds
every slot), an idle timeout, and a lifetime, after which the client reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

log = logging.getLogger(__name__)


class ConnectionGuard:
    def __init__(
        self,
        inner: Callable[[], asyncio.Protocol],
        *,
        max_connections: int,
        idle_timeout: float,
        lifetime: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.clock = clock
        self.open: set[_Guarded] = set()
        self.evicted = 0
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.inner())

    def admit(self, conn: _Guarded) -> None:
        if len(self.open) >= self.max_connections:
            idlest = min(self.open, key=lambda c: c.last_active)
            idlest.close("the connection cap was reached")
            self.evicted += 1
        self.open.add(conn)
        if self._sweeper is None:
            self._schedule()

    def _schedule(self) -> None:
        period = max(0.05, min(self.idle_timeout, self.lifetime) / 4)
        self._sweeper = asyncio.get_running_loop().call_later(period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.clock()
        for conn in list(self.open):
            if now - conn.born > self.lifetime:
                conn.close("its lifetime ended")
            elif now - conn.last_active > self.idle_timeout:
                conn.close("it was idle")
        if self.open:
            self._schedule()

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _Guarded(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol; counts activity both ways."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.BaseTransport | None = None
        self.born = self.last_active = guard.clock()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.guard.admit(self)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.guard.clock()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.last_active = self.guard.clock()
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.open.discard(self)
        self.inner.connection_lost(exc)

    def close(self, why: str) -> None:
        self.guard.open.discard(self)
        if self.transport is not None:
            peer = self.transport.get_extra_info("peername")
            log.debug("closing API connection from %s: %s", peer, why)
            cast(asyncio.Transport, self.transport).abort()


class GuardedSite(web.TCPSite):
    """aiohttp's TCPSite with every connection going through a ConnectionGuard."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, **limits: Any) -> None:
        super().__init__(runner, host, port, reuse_address=True)
        self.limits = limits
        self.guard: ConnectionGuard | None = None

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, **self.limits)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port

    async def stop(self) -> None:
        if self.guard is not None:
            self.guard.stop()
        await super().stop()
