"""HTTP and HTTPS checks: status, body, TLS verification, one fresh connection per probe.

The request is written and the response read over a plain asyncio protocol:
one connection, `Connection: close`, at most 64 KiB of body. A client library
built for pooled, redirecting, decompressing sessions spent ~4x the CPU per
probe (bench/probe_capacity.py), and probes share a core with DNS answers.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from geodns.config.model import Check
from geodns.health.checks.base import OK, ProbeResult, Target, excerpt, failed

MAX_BODY = 64 * 1024  # enough for any health page; a runaway body is not read further
MAX_HEADER = 16 * 1024


class HttpError(Exception):
    """A response that is not HTTP/1.x as we can read it."""


def _status_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def parse_response(buf: bytes, eof: bool, head_only: bool) -> tuple[int, bytes] | None:
    """(status, body) once `buf` holds a whole response (or enough of it), else None.

    Handles Content-Length, chunked and close-delimited bodies; stops at MAX_BODY."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > MAX_HEADER:
            raise HttpError("response headers longer than 16 KiB")
        if eof:
            raise HttpError("connection closed before the response headers ended" if buf else "")
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = buf[end + 4 :]
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        decoded = _dechunk(body)
        if decoded is not None:
            return status, decoded
        if eof:
            raise HttpError("connection closed inside a chunked body")
        return None
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise HttpError(f"bad Content-Length {headers['content-length']!r}") from None
        if len(body) >= min(length, MAX_BODY) or eof:
            return status, body[: min(length, MAX_BODY)]
        return None
    if eof or len(body) >= MAX_BODY:
        return status, body[:MAX_BODY]
    return None


def _dechunk(body: bytes) -> bytes | None:
    """The decoded body when complete (or MAX_BODY reached), else None."""
    out = bytearray()
    pos = 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return bytes(out) if len(out) >= MAX_BODY else None
        try:
            size = int(body[pos:line_end].split(b";")[0], 16)
        except ValueError:
            raise HttpError("bad chunk size in a chunked body") from None
        if size == 0:
            return bytes(out)
        start = line_end + 2
        if len(body) < start + size + 2:
            out += body[start : start + size]
            return bytes(out[:MAX_BODY]) if len(out) >= MAX_BODY else None
        out += body[start : start + size]
        if len(out) >= MAX_BODY:
            return bytes(out[:MAX_BODY])
        pos = start + size + 2


class _Exchange(asyncio.Protocol):
    """Writes one request, collects one response, resolves `done`."""

    def __init__(self, request: bytes, head_only: bool, done: asyncio.Future[tuple[int, bytes]]) -> None:
        self.request = request
        self.head_only = head_only
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: duck-typed on purpose.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._check(eof=False)

    def eof_received(self) -> bool:
        self._check(eof=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None:
                self.done.set_exception(exc)
            else:
                self._check(eof=True)

    def _check(self, eof: bool) -> None:
        if self.done.done():
            return
        try:
            result = parse_response(bytes(self.buf), eof, self.head_only)
        except HttpError as exc:
            self.done.set_exception(exc)
            result = None
        if result is not None:
            self.done.set_result(result)
        if self.done.done() and self.transport is not None:
            self.transport.abort()  # the rest of a runaway body is never read


class HttpProbe:
    def __init__(self, check: Check) -> None:
        self.check = check
        self.tls: ssl.SSLContext | None = None
        if check.type == "https":
            if check.tls_verify:
                self.tls = ssl.create_default_context(cafile=str(check.ca_file) if check.ca_file else None)
            else:
                self.tls = ssl.create_default_context()
                self.tls.check_hostname = False
                self.tls.verify_mode = ssl.CERT_NONE
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in check.headers if k.lower() != "host")
        self.host_override = next((v for k, v in check.headers if k.lower() == "host"), check.host)

    def request(self, target: Target) -> bytes:
        check = self.check
        default = 443 if check.type == "https" else 80
        host = self.host_override or (target.url_host if target.port == default else str(target))
        body = "Content-Length: 0\r\n" if check.method == "POST" else ""
        return (
            f"{check.method} {check.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: geodns-check\r\n"
            f"Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n{body}{self.extra}\r\n"
        ).encode("latin-1")

    async def probe(self, target: Target) -> ProbeResult:
        check = self.check
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        head_only = check.method == "HEAD"
        port = target.port if target.port is not None else (443 if self.tls else 80)
        transport: asyncio.BaseTransport | None = None
        try:
            transport, _ = await loop.create_connection(
                lambda: _Exchange(self.request(target), head_only, done),
                target.address,
                port,
                ssl=self.tls,
                server_hostname=(check.host or target.address) if self.tls else None,
            )
            status, body = await done
        except ssl.SSLCertVerificationError as exc:
            return failed("tls", f"TLS certificate not trusted: {exc.verify_message or exc}")
        except ssl.SSLError as exc:
            return failed("tls", f"TLS error: {exc.reason or exc}")
        except ConnectionRefusedError:
            return failed("refused", f"cannot connect to {target}: connection refused")
        except HttpError as exc:
            if not str(exc):
                return failed("disconnect", "server closed the connection without a response")
            return failed("protocol", f"bad HTTP response: {exc}")
        except (ConnectionResetError, BrokenPipeError):
            return failed("disconnect", "connection reset by the server")
        except OSError as exc:
            return failed("connect", f"cannot connect to {target}: {(exc.strerror or str(exc)).lower()}")
        finally:
            if transport is not None:
                cast(asyncio.Transport, transport).abort()
        if not any(lo <= status <= hi for lo, hi in check.expect_status):
            return failed("status", f"HTTP {status} (expected {_status_text(check.expect_status)})")
        if check.expect_body is not None:
            text = body.decode("utf-8", "replace")
            if not check.expect_body.matches(text):
                return failed(
                    "body", f"HTTP {status} body did not match {check.expect_body}: {excerpt(text, 80)!r}"
                )
        return OK

    async def close(self) -> None:
        return None
