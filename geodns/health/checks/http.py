"""HTTP and HTTPS checks: status, body, TLS verification, one fresh connection per probe.

The request is written and the response read over a plain asyncio protocol:
one connection, `Connection: close`, at most 64 KiB of body. A client library
built for pooled, redirecting, decompressing sessions spent ~4x the CPU per
probe (bench/probe_capacity.py), and probes share a core with DNS answers.

The response grammar is llhttp's (through httptools: the C parser behind
uvicorn and Node.js), fed incrementally: each byte is looked at once, however
the response trickles in. What a hostile or broken backend can make us hold is
bounded: 16 KiB of headers, 64 KiB of body, 256 KiB on the wire in all (an
endless chunk extension is cut there), and the probe's timeout bounds the time.
Interim 1xx responses (100 Continue, 103 Early Hints) are skipped.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

import httptools

from geodns.config.model import Check
from geodns.health.checks.base import OK, ProbeResult, Target, excerpt, failed, os_failure

MAX_BODY = 64 * 1024  # enough for any health page; a runaway body is not read further
MAX_HEADER = 16 * 1024
MAX_WIRE = 256 * 1024  # all bytes of one exchange, framing included


class HttpError(Exception):
    """A response that is not HTTP/1.x as we can read it."""


def _status_text(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


class ResponseReader:
    """One HTTP/1.x response, read incrementally. `feed` returns True once the
    response is complete (or its body reached MAX_BODY); `finish` says what the
    response was when the connection ends. Both raise HttpError."""

    def __init__(self, head_only: bool) -> None:
        self.head_only = head_only
        self.parser = httptools.HttpResponseParser(self)
        self.wire = 0
        self.before_body = 0  # bytes fed while no final response's headers were complete
        self.first = b""  # the first bytes, to name what answered when it is not HTTP
        self.status = 0
        self.final = False  # the headers of a final (non-1xx) response are complete
        self.complete = False
        self.framed = False  # Content-Length or chunked: the end is known, not at close
        self.chunked = False
        self.body = bytearray()

    # httptools callbacks: they only record; deciding happens in feed/finish.
    def on_message_begin(self) -> None:
        self.framed = self.chunked = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length":
            self.framed = True
        elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
            self.framed = self.chunked = True

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim: the real answer follows
        self.status = status
        self.final = True
        if self.head_only or status in (204, 304):
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.final and len(self.body) < MAX_BODY:
            self.body += body[: MAX_BODY - len(self.body)]

    def on_message_complete(self) -> None:
        if self.final:
            self.complete = True

    def feed(self, data: bytes) -> bool:
        if self.complete:
            return True
        if len(self.first) < 64:
            self.first += data[: 64 - len(self.first)]
            if not b"HTTP/".startswith(self.first[:5]) and not self.first.startswith(b"HTTP/"):
                raise HttpError(f"not an HTTP/1.x status line: {self._first_line()!r}")
        self.wire += len(data)
        if not self.final:
            self.before_body += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise HttpError("the server switched protocols (101) instead of answering") from None
        except httptools.HttpParserError as exc:
            raise HttpError(_describe(exc, self._first_line())) from None
        if self.complete or len(self.body) >= MAX_BODY:
            self.complete = True
            return True
        if not self.final and self.before_body > MAX_HEADER:
            raise HttpError("response headers longer than 16 KiB")
        if self.wire > MAX_WIRE:
            raise HttpError(f"no complete response within {MAX_WIRE // 1024} KiB")
        return False

    def finish(self) -> tuple[int, bytes]:
        """The connection ended: the response, if it was whole enough to judge."""
        if self.complete:
            return self.status, bytes(self.body)
        if not self.final:
            raise HttpError("connection closed before the response headers ended" if self.wire else "")
        if self.chunked:
            raise HttpError("connection closed inside a chunked body")
        # Close-delimited bodies end here; a short Content-Length body is judged as it is.
        return self.status, bytes(self.body)

    def _first_line(self) -> str:
        return self.first.split(b"\r\n")[0].split(b"\n")[0][:80].decode("latin-1")


def _describe(exc: Exception, first_line: str) -> str:
    text = str(exc)
    if isinstance(exc, httptools.HttpParserInvalidStatusError) or "status" in text.lower():
        return f"not an HTTP/1.x status line: {first_line!r}"
    if "content-length" in text.lower():
        return f"bad Content-Length ({text})"
    if "chunk" in text.lower():
        return f"bad chunk size in a chunked body ({text})"
    return text


def parse_response(buf: bytes, eof: bool, head_only: bool) -> tuple[int, bytes] | None:
    """(status, body) once `buf` holds a whole response (or enough of it), else None."""
    reader = ResponseReader(head_only)
    if buf and reader.feed(buf):
        return reader.status, bytes(reader.body)
    return reader.finish() if eof else None


class _Exchange(asyncio.Protocol):
    """Writes one request, collects one response, resolves `done`."""

    def __init__(self, request: bytes, head_only: bool, done: asyncio.Future[tuple[int, bytes]]) -> None:
        self.request = request
        self.done = done
        self.reader = ResponseReader(head_only)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: duck-typed on purpose.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        try:
            if self.reader.feed(data):
                self.done.set_result((self.reader.status, bytes(self.reader.body)))
        except HttpError as exc:
            self.done.set_exception(exc)
        if self.done.done() and self.transport is not None:
            self.transport.abort()  # the rest of a runaway body is never read

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is not None:
                self.done.set_exception(exc)
            else:
                self._finish()

    def _finish(self) -> None:
        if self.done.done():
            return
        try:
            self.done.set_result(self.reader.finish())
        except HttpError as exc:
            self.done.set_exception(exc)


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
            return os_failure(exc, "connect", f"cannot connect to {target}")
        finally:
            if not done.done():
                done.cancel()  # a timeout: whatever the connection says later is not waited for
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
