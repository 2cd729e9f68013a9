"""`geodns demo`: the shipped example with simulated backends, one per member
probe target, so a newcomer can watch failover without real datacenters.

Each backend answers `GET <path>` with the body the check expects. Break one
with `curl -X POST http://127.0.0.11:8080/break`, mend it with `/heal`; break
a whole datacenter with `curl -X POST http://127.0.0.11:8080/break?dc=par`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from geodns.config.model import Config
from geodns.health.health import probe_keys

log = logging.getLogger(__name__)


@dataclass
class DemoBackends:
    config: Config
    broken: set[str] = field(default_factory=set)  # addresses answering 503
    runners: list[web.AppRunner] = field(default_factory=list)
    dc_of: dict[str, str] = field(default_factory=dict)

    async def start(self) -> None:
        for key, members in probe_keys(self.config).items():
            check = self.config.checks[key.check]
            if check.type != "http" or key.port is None:
                continue
            self.dc_of[key.address] = members[0][1].dc
            body = check.expect_body.text if check.expect_body and not check.expect_body.pattern else "OK"
            app = web.Application()
            app.router.add_get(check.path, self._health(key.address, body))
            app.router.add_post("/break", self._toggle(key.address, broken=True))
            app.router.add_post("/heal", self._toggle(key.address, broken=False))
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
            await runner.setup()
            await web.TCPSite(runner, key.address, key.port).start()
            self.runners.append(runner)
            log.info(
                "demo backend for %s (%s) on http://%s:%d%s",
                members[0][1].address,
                self.dc_of[key.address],
                key.address,
                key.port,
                check.path,
            )

    def _health(self, address: str, body: str) -> Handler:
        async def handler(_request: web.Request) -> web.Response:
            if address in self.broken:
                return web.Response(status=503, text="ERROR: simulated outage\n")
            return web.Response(text=body)

        return handler

    def _toggle(self, address: str, *, broken: bool) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            dc = request.query.get("dc")
            targets = [a for a, d in self.dc_of.items() if d == dc] if dc else [address]
            for target in targets:
                (self.broken.add if broken else self.broken.discard)(target)
            word = "broken" if broken else "healed"
            log.warning("demo: %s %s", word, ", ".join(targets))
            return web.Response(text=f"{word}: {', '.join(targets)}\n")

        return handler

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def run_demo(config: Config) -> None:
    """Backends first (so the first probes find them), then the daemon until SIGTERM."""
    from geodns.daemon import Daemon  # noqa: PLC0415 - the daemon imports the world; demo is rare

    backends = DemoBackends(config)
    await backends.start()
    try:
        await Daemon(config).run()
    finally:
        await backends.stop()
