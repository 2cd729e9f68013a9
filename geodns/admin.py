"""The HTTP listener: /healthz, /readyz, /v1/status and /metrics."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from aiohttp import web

from geodns.config.model import ListenAddress

log = logging.getLogger(__name__)


class AdminSource(Protocol):
    """What the HTTP API reads from the running daemon."""

    @property
    def serving(self) -> bool: ...

    def ready(self) -> tuple[bool, list[str]]: ...

    def status(self) -> dict[str, Any]: ...

    def metrics(self) -> bytes: ...


def make_app(source: AdminSource) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        if source.serving:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")

    async def readyz(_request: web.Request) -> web.Response:
        # Not ready until every checked member has a fresh probe result: an
        # orchestrator should not route to an instance answering from no information.
        ready, pending = source.ready()
        if ready and source.serving:
            return web.Response(text="ready\n")
        lines = "".join(f"waiting for {p}\n" for p in pending[:50])
        return web.Response(status=503, text=f"not ready\n{lines}")

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(source.status())

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(
            body=source.metrics(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    return app


class AdminServer:
    def __init__(self, app: web.Application) -> None:
        # Short grace: a SIGTERM must stop the daemon within a second.
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self.bound: ListenAddress | None = None

    async def start(self, address: ListenAddress) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, address.host, address.port, reuse_address=True)
        await site.start()
        port = self.runner.addresses[0][1] if self.runner.addresses else address.port
        self.bound = ListenAddress(address.host, port)
        log.info("HTTP listening on http://%s/", self.bound)

    async def stop(self) -> None:
        await self.runner.cleanup()
