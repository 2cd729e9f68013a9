"""What keeps a web browser from being turned against the API.

A page on any other site can make the operator's browser send requests to
127.0.0.1:8053: a form or a no-cors fetch is a "simple" request, sent without
asking. So:
- writes must be `Content-Type: application/json` (a page can only send that
  after a CORS preflight, which this API never grants);
- a request whose Host is not one of our names is refused (421): DNS rebinding
  makes a hostile name resolve to 127.0.0.1, but the browser still sends that name;
- a write whose Origin is not ours is refused (403);
- without a token, writes are accepted from loopback clients only;
- every response carries a CSP without inline script, X-Frame-Options DENY,
  nosniff and no-referrer, and `Server: geodns` without versions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self';"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def allowed_hosts(listen_host: str, port: int, extra: Iterable[str]) -> frozenset[str]:
    """Host header values we answer to: the listen address, the loopback names, and
    the operator's own list (names a reverse proxy or a DNS name for this host uses)."""
    names = {listen_host, "localhost", "127.0.0.1", "[::1]"}
    if ":" in listen_host and not listen_host.startswith("["):
        names.add(f"[{listen_host}]")
    names |= set(extra)
    return frozenset(
        {*(f"{n}:{port}" for n in names), *(n for n in names if ":" not in n or n.startswith("["))}
    )


def _loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer.split("%")[0]).is_loopback
    except ValueError:
        return False


def guard(hosts: Callable[[], frozenset[str]], token_set: Callable[[], bool]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = _check(request, hosts(), token_set())
        response = refused if refused is not None else await handler(request)
        response.headers.update(HEADERS)
        return response

    return middleware


def _check(request: web.Request, hosts: frozenset[str], token_set: bool) -> web.Response | None:
    host = request.headers.get("Host", "").lower()
    if host not in hosts:
        return web.json_response(
            {"error": f"unknown Host {host!r}: add it to server.api_allowed_hosts if it is ours"}, status=421
        )
    if request.method not in WRITES:
        return None
    origin = request.headers.get("Origin")
    if origin is not None and origin.lower().removeprefix("http://").removeprefix("https://") not in hosts:
        return web.json_response({"error": f"cross-origin write from {origin} refused"}, status=403)
    if request.method != "DELETE" and request.content_type != "application/json":  # DELETE is never simple
        return web.json_response({"error": "writes must be Content-Type: application/json"}, status=415)
    if not token_set and not _loopback(request.remote):
        return web.json_response(
            {"error": "writes without a token are accepted from loopback only: set server.api_token_file"},
            status=403,
        )
    return None


async def server_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "geodns"  # no versions to look up vulnerabilities by
