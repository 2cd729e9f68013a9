"""The HTTP listener: status page, /healthz, /readyz, /v1/status, /metrics,
overrides (drains) and explain. Writes need the bearer token when one is set."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import Any, Protocol

from aiohttp import web

from geodns.api import browser, clusterapi, statuspage
from geodns.api.guard import GuardedSite
from geodns.cluster.node import ClusterNode
from geodns.cluster.peers import OBSERVATIONS
from geodns.config.fields import Invalid, to_duration
from geodns.config.model import ListenAddress
from geodns.errors import listen_failure
from geodns.health.overrides import Override, OverrideError
from geodns.steering.overridestore import StateNotSaved

log = logging.getLogger(__name__)


class AdminSource(Protocol):
    """What the HTTP API reads from the running daemon."""

    @property
    def serving(self) -> bool: ...

    def ready(self) -> tuple[bool, list[str]]: ...

    async def status_json(self, *, gzipped: bool = False) -> bytes: ...

    async def metrics_text(self, *, gzipped: bool = False) -> bytes: ...

    @property
    def api_token(self) -> str | None: ...

    @property
    def read_token(self) -> str | None: ...

    def overrides(self) -> list[Override]: ...

    def add_override(
        self, target: str, state: str, reason: str, duration: float | None, by: str = ""
    ) -> Override: ...

    def remove_override(self, target: str) -> list[Override]: ...

    def acknowledge_override_problems(self) -> list[str]: ...

    async def answers_caught_up(self) -> list[str]:
        """Wait (briefly) until every DNS answer carries the latest health; what lags."""
        ...

    def api_hosts(self) -> frozenset[str]: ...

    def explain(self, name: str, qtype: str, client: str, ecs: str | None) -> dict[str, Any]: ...

    def answers(self, names: list[str], client: str) -> dict[str, Any]: ...

    async def wait_change(self, token: str) -> None:
        """Return when the answers may differ from those of `token`."""
        ...

    @property
    def cluster_node(self) -> ClusterNode | None: ...

    @property
    def cluster_token(self) -> str | None: ...


def _accepts_gzip(request: web.Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


def _encoding(gzipped: bool) -> dict[str, str]:
    return {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"} if gzipped else {"Vary": "Accept-Encoding"}


SOURCE: web.AppKey[AdminSource] = web.AppKey("source")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refusal(source: AdminSource, request: web.Request, *, read: bool = False) -> web.Response | None:
    """None when the request may go on; else the 401 that says why. Writes need the
    write token when one is set; reads need the read token (or the write token) when
    a read token is set. The scheme is case-insensitive (RFC 7235); tokens are
    compared in constant time."""
    tokens = [t for t in (source.api_token, source.read_token if read else None) if t is not None]
    if not tokens or (read and source.read_token is None):
        return None
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _error(401, "a bearer token is required (Authorization: Bearer ...)")
    offered = given.strip().encode()
    if not any(hmac.compare_digest(offered, token.encode()) for token in tokens):
        return _error(401, "token rejected")
    return None


@web.middleware
async def _reads(request: web.Request, handler: browser.Handler) -> web.StreamResponse:
    """With a read token, the documents (/v1/*, /metrics) need it; the page's shell,
    /healthz and /readyz stay open for people and orchestrators."""
    source: AdminSource = request.app[SOURCE]
    if request.path == OBSERVATIONS:
        return await handler(request)  # peers: the cluster token, checked by the handler
    if request.method == "GET" and (request.path.startswith("/v1/") or request.path == "/metrics"):
        refused = _refusal(source, request, read=True)
        if refused is not None:
            return refused
    return await handler(request)


async def _with_lag(source: AdminSource, body: dict[str, Any]) -> dict[str, Any]:
    """The response once DNS answers carry the change, or with a warning saying
    which part of the server does not yet."""
    lagging = await source.answers_caught_up()
    if lagging:
        body["warning"] = "applied, but not yet answered by: " + "; ".join(lagging)
    return body


def make_app(source: AdminSource) -> web.Application:
    async def healthz(_request: web.Request) -> web.Response:
        if source.serving:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")

    async def readyz(_request: web.Request) -> web.Response:
        # Not ready until every checked member has a fresh probe result, nor while the
        # checker itself is in trouble: an orchestrator should not route to an instance
        # answering from no (or stale) information.
        ready, reasons = source.ready()
        if ready and source.serving:
            return web.Response(text="ready\n")
        lines = "".join(f"{r}\n" for r in reasons[:50])
        return web.Response(status=503, text=f"not ready\n{lines}")

    async def status(request: web.Request) -> web.Response:
        gz = _accepts_gzip(request)
        body = await source.status_json(gzipped=gz)
        return web.Response(body=body, content_type="application/json", headers=_encoding(gz))

    async def metrics(request: web.Request) -> web.Response:
        gz = _accepts_gzip(request)
        return web.Response(
            body=await source.metrics_text(gzipped=gz),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff", **_encoding(gz)},
        )

    # Read once per app: the files are package data and do not change under a running daemon.
    page_html = statuspage.read("index.html")
    assets = {name: (statuspage.read(name), kind) for name, kind in statuspage.ASSETS.items()}

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=page_html, content_type="text/html")

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        text, kind = found
        return web.Response(text=text, content_type=kind)

    async def list_overrides(_request: web.Request) -> web.Response:
        return web.json_response({"overrides": [o.to_json() for o in source.overrides()]})

    async def add_override(request: web.Request) -> web.Response:
        if (refused := _refusal(source, request)) is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("target"), str):
            return _error(400, 'expected {"target": "dc=par", "state": "down", "reason": "...", "for": "2h"}')
        duration = None
        if body.get("for") is not None:
            try:
                duration = to_duration(body["for"])
            except Invalid as exc:
                return _error(400, f"for: {exc}")
        try:
            # Who: what the CLI says (user@host), always with the address it came from.
            said = str(body.get("by") or "").strip()
            by = f"{said} from {request.remote}" if said else f"API client {request.remote}"
            override = source.add_override(
                body["target"], str(body.get("state", "down")), str(body.get("reason", "")), duration, by
            )
        except OverrideError as exc:
            return _error(400, str(exc))
        except StateNotSaved as exc:
            return _error(503, str(exc))  # nothing applied: never acknowledge what a restart would undo
        return web.json_response(await _with_lag(source, override.to_json()), status=201)

    async def remove_override(request: web.Request) -> web.Response:
        if (refused := _refusal(source, request)) is not None:
            return refused
        target = request.match_info["target"]
        try:
            gone = source.remove_override(target)
        except OverrideError as exc:
            return _error(400, str(exc))
        except StateNotSaved as exc:
            return _error(503, str(exc))
        if not gone:
            active = ", ".join(o.target for o in source.overrides()) or "none"
            return _error(404, f"nothing to undrain: {target} has no override (active overrides: {active})")
        return web.json_response(await _with_lag(source, {"removed": [o.to_json() for o in gone]}))

    async def acknowledge(request: web.Request) -> web.Response:
        if (refused := _refusal(source, request)) is not None:
            return refused
        return web.json_response({"acknowledged": source.acknowledge_override_problems()})

    async def explain(request: web.Request) -> web.Response:
        q = request.query
        if "name" not in q:
            return _error(400, "name is required: /v1/explain?name=www.example.com&type=A&client=10.1.2.3")
        try:
            doc = source.explain(q["name"], q.get("type", "A"), q.get("client", "127.0.0.1"), q.get("ecs"))
        except (ValueError, KeyError) as exc:
            return _error(400, f"cannot explain that question: {exc}")
        return web.json_response(doc)

    async def answers(request: web.Request) -> web.Response:
        """Every address NAME resolves to now (`geodns hosts`). With `wait=TOKEN`, a long
        poll: the reply comes when the answers may have changed since TOKEN, or after
        `timeout` seconds (at most 10: the listener drops connections idle for 15)."""
        q = request.query
        names = q.getall("name", [])
        if not names or len(names) > MAX_NAMES:
            return _error(400, f"give 1 to {MAX_NAMES} names: /v1/answers?name=db.example.com&name=...")
        try:
            timeout = min(max(float(q.get("timeout", "10")), 0.0), LONG_POLL_MAX)
        except ValueError:
            return _error(400, "timeout must be a number of seconds")
        if "wait" in q:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await source.wait_change(q["wait"])
        return web.json_response(source.answers(names, q.get("client", "127.0.0.1")))

    async def cluster_observations(request: web.Request) -> web.Response:
        return await clusterapi.observations(request, source.cluster_node, source.cluster_token)

    async def cluster(_request: web.Request) -> web.Response:
        node = source.cluster_node
        if node is None:
            return _error(404, "this instance has no cluster section")
        return web.json_response(clusterapi.cluster_document(node))

    async def release(request: web.Request) -> web.Response:
        if (refused := _refusal(source, request)) is not None:
            return refused
        node = source.cluster_node
        if node is None:
            return _error(404, "this instance has no cluster section")
        who = request.headers.get("X-Geodns-User", "") or (request.remote or "the API")
        if not node.release(who):
            return _error(409, "the governor holds nothing")
        return web.json_response({"released": True})

    guard = browser.guard(source.api_hosts, lambda: source.api_token is not None)
    app = web.Application(middlewares=[guard, _reads])
    app[SOURCE] = source
    app.on_response_prepare.append(browser.server_header)
    app.router.add_get("/", page)
    app.router.add_get(OBSERVATIONS, cluster_observations)
    app.router.add_get("/v1/cluster", cluster)
    app.router.add_post("/v1/cluster/release", release)
    app.router.add_get("/static/{name}", asset)
    app.router.add_get("/v1/overrides", list_overrides)
    app.router.add_post("/v1/overrides", add_override)
    app.router.add_delete("/v1/overrides/{target}", remove_override)
    app.router.add_post("/v1/overrides/ack", acknowledge)
    app.router.add_get("/v1/explain", explain)
    app.router.add_get("/v1/answers", answers)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    return app


MAX_NAMES = 100
LONG_POLL_MAX = 10.0  # below API_IDLE_TIMEOUT
API_IDLE_TIMEOUT = 15.0  # seconds without a byte either way (the status page polls every 2 s)
API_LIFETIME = 120.0  # then the client reconnects: no connection is held forever


class AdminServer:
    def __init__(self, app: web.Application, *, max_connections: int = 64) -> None:
        # Short grace: a SIGTERM must stop the daemon within a second. Keep-alive
        # connections are dropped after 5 s of quiet (aiohttp's default is an hour).
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, keepalive_timeout=5.0)
        self.max_connections = max_connections
        self.site: GuardedSite | None = None
        self.bound: ListenAddress | None = None

    async def start(self, address: ListenAddress) -> None:
        await self.runner.setup()
        self.site = GuardedSite(
            self.runner,
            address.host,
            address.port,
            max_connections=self.max_connections,
            idle_timeout=API_IDLE_TIMEOUT,
            lifetime=API_LIFETIME,
        )
        try:
            await self.site.start()
        except OSError as exc:
            raise listen_failure(exc, address.host, address.port, "HTTP") from None
        port = self.runner.addresses[0][1] if self.runner.addresses else address.port
        self.bound = ListenAddress(address.host, port)
        log.info("HTTP listening on http://%s/", self.bound)

    async def stop(self) -> None:
        await self.runner.cleanup()
