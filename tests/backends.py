"""Real backends on 127.0.0.x for the health-check tests: aiohttp apps whose
behaviour a test switches at run time, and a small TCP banner server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Self

from aiohttp import web


@dataclass
class Behaviour:
    status: int = 200
    body: str = "OK"
    hang: bool = False
    require_host: str | None = None
    big_body: int = 0  # bytes of filler sent after the body
    flap: bool = False  # alternate between healthy and 503 on every request
    delay: float = 0.0  # seconds before answering


@dataclass
class HttpBackend:
    host: str
    behaviour: Behaviour = field(default_factory=Behaviour)
    ssl_context: ssl.SSLContext | None = None
    port: int = 0
    requests: int = 0
    connections: set[int] = field(default_factory=set)
    hosts_seen: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    async def start(self, port: int = 0) -> HttpBackend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        transport = request.transport
        if transport is not None:
            self.connections.add(id(transport))
        self.hosts_seen.append(request.headers.get("Host", ""))
        b = self.behaviour
        if b.hang:
            await asyncio.sleep(3600)
        if b.delay:
            await asyncio.sleep(b.delay)
        if b.require_host is not None and request.headers.get("Host") != b.require_host:
            return web.Response(status=421, text="wrong host")
        if b.flap and self.requests % 2 == 0:
            return web.Response(status=503, text="flap")
        if b.big_body:
            resp = web.StreamResponse(status=b.status)
            await resp.prepare(request)
            await resp.write(b.body.encode())
            chunk = b"x" * 65536
            sent = 0
            with contextlib.suppress(ConnectionError):
                while sent < b.big_body:
                    await resp.write(chunk)
                    sent += len(chunk)
            return resp
        return web.Response(status=b.status, text=b.body)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class TcpServer:
    """A raw TCP server on `host`, any free port; subclasses say what `_serve` does."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


class BannerServer(TcpServer):
    """Says `banner` on connect; answers `PING\\r\\n` with `PONG\\r\\n`."""

    def __init__(self, host: str, banner: bytes) -> None:
        super().__init__(host)
        self.banner = banner

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.banner)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 5)
            if line == b"PING\r\n":
                writer.write(b"PONG\r\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


class HostileServer(TcpServer):
    """A backend that misbehaves on purpose, over raw TCP, bounded in time:
    - endless-chunk: a chunked 200 whose chunk-size line never ends;
    - endless-headers: a status line, then one header that never ends;
    - trickle: a valid response, one byte per `pace` seconds;
    - huge: a 200 with a 100 MB body, as fast as the socket takes it;
    - interim: 103 Early Hints and 100 Continue before a real 200 OK.
    Each connection stops by itself after `seconds` or when the client goes."""

    def __init__(self, host: str, mode: str, *, pace: float = 1.0, seconds: float = 10.0) -> None:
        super().__init__(host)
        self.mode = mode
        self.pace = pace
        self.seconds = seconds
        self.sent = 0

    def _script(self) -> tuple[bytes, bytes]:
        """(what is sent first, what is then repeated)."""
        if self.mode == "endless-chunk":
            return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;", b"a" * 8192
        if self.mode == "endless-headers":
            return b"HTTP/1.1 200 OK\r\nX-Forever: ", b"a" * 8192
        if self.mode == "huge":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\nOK", b"x" * 65536
        if self.mode == "interim":
            return (
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
                b"",
            )
        assert self.mode == "trickle"
        return b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first, repeated = self._script()
        deadline = asyncio.get_running_loop().time() + self.seconds
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(first)
            self.sent += len(first)
            await writer.drain()
            if self.mode == "trickle":
                for byte in repeated:
                    await asyncio.sleep(self.pace)
                    writer.write(bytes([byte]))
                    self.sent += 1
                    await writer.drain()
            while repeated and self.mode != "trickle" and asyncio.get_running_loop().time() < deadline:
                writer.write(repeated)
                self.sent += len(repeated)
                await writer.drain()
            if not repeated:
                await asyncio.sleep(min(self.seconds, 0.5))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def backends_on(*addresses: str, body: str = "OK") -> AsyncIterator[dict[str, HttpBackend]]:
    """One healthy HTTP backend per address, all on the same free port (one check
    port for every member), stopped afterwards. Tests flip `behaviour` to break them."""
    first = await HttpBackend(addresses[0], Behaviour(body=body)).start()
    found = {addresses[0]: first}
    try:
        for address in addresses[1:]:
            found[address] = await HttpBackend(address, Behaviour(body=body)).start(port=first.port)
        yield found
    finally:
        for backend in found.values():
            await backend.stop()


@dataclass
class ProcessBackend:
    """An HTTP backend answering 200 "OK" from a process of its own: for tests that
    starve this process (of file descriptors, of its loop), which must not starve
    the backend as well — a backend elsewhere never shares the checker's limits."""

    host: str
    port: int
    process: asyncio.subprocess.Process


@contextlib.asynccontextmanager
async def process_backends(*addresses: str) -> AsyncIterator[list[ProcessBackend]]:
    from tests.netlab import BACKEND  # the namespace lab's backend: the same tiny server

    started: list[ProcessBackend] = []
    try:
        for address in addresses:
            with socket.socket() as probe:  # a free port on that address
                probe.bind((address, 0))
                port = probe.getsockname()[1]
            process = await asyncio.create_subprocess_exec(sys.executable, "-c", BACKEND, address, str(port))
            started.append(ProcessBackend(address, port, process))
        for backend in started:
            for _ in range(200):  # listening within 10 s
                with contextlib.suppress(OSError):
                    _reader, writer = await asyncio.open_connection(backend.host, backend.port)
                    writer.close()
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"backend on {backend.host}:{backend.port} never listened")
        yield started
    finally:
        for backend in started:
            backend.process.kill()
            await backend.process.wait()
