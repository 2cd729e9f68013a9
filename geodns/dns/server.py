"""DNS over UDP and TCP on asyncio (the I/O shell around handler.handle).

UDP drains the socket in batches from one `add_reader` callback instead of
one `DatagramProtocol` call per packet: the per-packet protocol overhead was
the measured bottleneck (~18k vs ~61k answers/s on one core).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import cast

from geodns.config.model import ListenAddress
from geodns.dns.fastpath import answer, answer_entry
from geodns.dns.handler import ServingState, Stats

log = logging.getLogger(__name__)

UDP_BATCH = 64  # datagrams per wake-up: enough to amortise the loop, short enough to stay fair
UDP_RCVBUF = 4 * 1024 * 1024  # a 500-query burst overflows the 208 KiB default
MAX_DATAGRAM = 65535
DNS_HEADER = 12

StateGetter = Callable[[], ServingState]


class UdpListener:
    def __init__(self, sock: socket.socket, state: StateGetter, stats: Stats) -> None:
        self.sock = sock
        self.state = state
        self.stats = stats

    def on_readable(self) -> None:
        sock, stats = self.sock, self.stats
        state = self.state()  # one state per batch: a new snapshot lands between batches
        table = state.cache.udp
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error surfaced on the socket
                log.debug("UDP receive error: %s", exc)
                continue
            # The common case inline: a cached, client-independent reply.
            key = data[2:]
            entry = table.get(key)
            if entry.__class__ is bytes:
                table.move_to_end(key)  # least recently used goes first
                stats.queries += 1
                stats.cache_hits += 1
                reply: bytes | None = data[:2] + entry
            else:
                if entry is not None:
                    table.move_to_end(key)
                reply = answer_entry(entry, data, addr[0], True, state, stats)  # no second lookup
            if reply is None:
                continue
            try:
                sock.sendto(reply, addr)
            except OSError as exc:  # a full send buffer or an unreachable client
                stats.dropped += 1
                log.debug("UDP send to %s failed: %s", addr[0], exc)


class TcpConnection(asyncio.Protocol):
    """DNS over TCP (RFC 7766): 2-byte length framing, pipelined queries answered
    in order, prefixes split across segments, an idle timeout, and a cap on
    connections. A protocol rather than streams: no task per connection and no
    await per message, which halved TCP throughput before."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are duck-typed
        server = self.server
        if server.tcp_connections >= server.tcp_max_connections:
            # Over the cap: close at once rather than queue (RFC 7766 6.2.2).
            self.transport.close()
            return
        server.tcp_connections += 1
        server._tcp_conns.add(self)
        self.counted = True
        peer = transport.get_extra_info("peername")
        self.source = peer[0] if peer else "?"
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.server.tcp_idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._arm()
        server, transport, buf = self.server, self.transport, self.buf
        assert transport is not None
        state = server.state()
        while len(buf) >= 2:
            length = (buf[0] << 8) | buf[1]
            if length < DNS_HEADER:
                # Shorter than a DNS header: nothing to answer, and no reason to wait for
                # this client's idle timeout.
                transport.close()
                return
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            reply = answer(message, self.source, False, state, server.stats)
            if reply is not None:
                transport.write(struct.pack("!H", len(reply)) + reply)

    def pause_writing(self) -> None:
        # A client that sends but does not read: stop reading its queries too.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.counted:
            self.counted = False
            self.server.tcp_connections -= 1
            self.server._tcp_conns.discard(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class DnsServer:
    """UDP and TCP listeners on a set of addresses, answering from `state()`."""

    def __init__(
        self,
        state: StateGetter,
        stats: Stats,
        *,
        tcp_idle_timeout: float = 10.0,
        tcp_max_connections: int = 256,
        reuseport: bool = False,
    ) -> None:
        self.state = state
        self.reuseport = reuseport  # a DNS worker: one of several sockets on the same port
        self.stats = stats
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_max_connections = tcp_max_connections
        self.tcp_connections = 0
        self._udp: list[socket.socket] = []
        self._tcp: list[asyncio.Server] = []
        self._tcp_conns: set[TcpConnection] = set()
        self.bound: list[ListenAddress] = []

    async def start(self, addresses: tuple[ListenAddress, ...]) -> None:
        """Bind every address (UDP then TCP on the same port); port 0 picks a free one."""
        try:
            for address in addresses:
                await self._bind(address)
        except BaseException:
            await self.stop()
            raise

    async def _bind(self, address: ListenAddress) -> None:
        loop = asyncio.get_running_loop()
        udp, tcp_sock = bind_pair(address, reuseport=self.reuseport)
        try:
            server = await loop.create_server(lambda: TcpConnection(self), sock=tcp_sock, backlog=512)
        except BaseException:
            udp.close()
            tcp_sock.close()
            raise
        loop.add_reader(udp.fileno(), UdpListener(udp, self.state, self.stats).on_readable)
        self._udp.append(udp)
        self._tcp.append(server)
        bound = ListenAddress(address.host, udp.getsockname()[1])
        self.bound.append(bound)
        log.info("DNS listening on %s (UDP and TCP)", bound)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for udp in self._udp:
            loop.remove_reader(udp.fileno())
            udp.close()
        for server in self._tcp:
            server.close()
        for conn in list(self._tcp_conns):
            conn.abort()
        for server in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._udp.clear()
        self._tcp.clear()


def _socket(family: int, kind: int, reuseport: bool) -> socket.socket:
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_pair(address: ListenAddress, *, reuseport: bool = False) -> tuple[socket.socket, socket.socket]:
    """A UDP socket (non-blocking, big receive buffer) and a TCP socket (bound, not
    yet listening) on the same port; port 0 picks one free for both."""
    family = socket.AF_INET6 if address.family_v6 else socket.AF_INET
    for _attempt in range(20 if address.port == 0 else 1):
        udp = _socket(family, socket.SOCK_DGRAM, reuseport)
        try:
            with contextlib.suppress(OSError):
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            udp.setblocking(False)
            udp.bind((address.host, address.port))
            port = udp.getsockname()[1]
            tcp = _socket(family, socket.SOCK_STREAM, reuseport)
            try:
                tcp.bind((address.host, port))
            except OSError:
                tcp.close()
                if address.port == 0:
                    udp.close()
                    continue  # the UDP port's TCP twin is taken: try another port
                raise
        except BaseException:
            udp.close()
            raise
        return udp, tcp
    raise OSError(f"no free port with both UDP and TCP available on {address.host}")


def reserve(address: ListenAddress) -> tuple[socket.socket, ListenAddress]:
    """Hold a port for DNS workers: a TCP socket bound with SO_REUSEPORT that never
    listens (so it takes no connection and no datagram), on a port whose UDP twin
    was free. Workers bind their own sockets beside it once ready to answer, so no
    query waits in the queue of a worker still starting."""
    udp, tcp = bind_pair(address, reuseport=True)
    udp.close()
    return tcp, ListenAddress(address.host, tcp.getsockname()[1])
