"""The HTTP listener: health of the daemon itself (and, later, status and drains)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from geodns.config.model import ListenAddress

log = logging.getLogger(__name__)


def make_app(serving: Callable[[], bool]) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        if serving():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
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
