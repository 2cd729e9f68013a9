"""DNS over UDP and TCP on asyncio (the I/O shell around handler.handle).

UDP drains the socket in batches from one `add_reader` callback instead of
one `DatagramProtocol` call per packet: the per-packet protocol overhead was
the measured bottleneck (~18k vs ~61k answers/s on one core).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from geodns.config.model import ListenAddress, RateLimit
from geodns.dns import native
from geodns.dns.fastcache import cased
from geodns.dns.fastpath import answer, answer_entry
from geodns.dns.handler import ServingState, Stats, count_answer
from geodns.dns.native import warn_if_unbuilt
from geodns.dns.ratelimit import RateLimiter
from geodns.dns.tcp import TCP_TURN_BUDGET, TcpConnection
from geodns.dns.tcpaccept import TcpAcceptor
from geodns.dns.udpio import Admit, Batch, udp_io
from geodns.errors import ListenError, listen_failure

log = logging.getLogger(__name__)

UDP_RCVBUF = 4 * 1024 * 1024  # a 500-query burst overflows the 208 KiB default
# Kernel send buffer of each TCP connection (accepted sockets inherit the listener's;
# Linux doubles it). Left to autotuning, a client that never reads had ~3 MB of
# replies queued in the kernel; tcp_max_queued bounds what waits beyond it.
TCP_SNDBUF = 32 * 1024

StateGetter = Callable[[], ServingState]


class PyReader:
    """What the C extension's UdpReader holds, for a build without it: the loop
    calls the listener, which serves in Python."""

    fd: int
    replay: int  # serve in C when readable (never here)
    state: StateGetter
    stats: Stats
    admit: Admit | None

    def __call__(self) -> None:
        self._serve()

    def _serve(self) -> None:
        raise NotImplementedError


if TYPE_CHECKING:
    ReaderBase = PyReader
else:
    ReaderBase = PyReader if native.netio is None else native.netio.UdpReader


class UdpListener(ReaderBase):
    """A UDP socket's reader. With the batched I/O the loop calls its C half
    (`_udpreader.c`), which receives a batch, sends what the cache replays and
    calls `_rest` only when datagrams are left for the Python path (misses, and
    what the rate limiter refused) or replies could not go."""

    def __init__(self, sock: socket.socket, server: DnsServer) -> None:
        self.io = udp_io(sock)
        self.server = server
        self.fd = sock.fileno()
        self.replay = int(self.io.replays)
        self.state = server.state
        self.stats = server.stats
        self.admit = server.limiter.admit if server.limiter is not None else None

    def _serve(self) -> None:
        """A batch through the I/O's serve() (the socket I/O's replays nothing), then _rest."""
        limiter = self.server.limiter
        now = time.monotonic() if limiter is not None else 0.0  # one clock read per batch
        state = self.state()  # one state per batch: a new snapshot lands between batches
        try:
            rest, refused, dropped, error = self.io.serve(state.cache, self.stats, self.admit, now)
        except OSError as exc:
            self._failed(exc)
            return
        self._rest(state, now, rest, refused, dropped, error)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, OSError):  # e.g. an ICMP error surfaced on the socket; more may wait
            log.debug("UDP receive error: %s", exc)
            return
        log.error("UDP replay failed", exc_info=exc)  # a bug of ours: said, counted, the loop goes on
        self.stats.internal_errors += 1

    def _rest(
        self, state: ServingState, now: float, rest: Batch, refused: Batch, dropped: int, error: int
    ) -> None:
        """Answer what the replay left, in Python, and send it."""
        stats = self.stats
        answers = stats.answers
        table = state.cache.udp
        limiter = self.server.limiter
        out: Batch = []
        replayed = self.io.replays  # the C replay already looked up the lowered name (0x20)
        for data, addr in rest:
            # The common case inline (the socket I/O's hits): a cached, client-independent reply.
            key = data[2:]
            entry = table.get(key)
            if entry.__class__ is bytes:
                table.move_to_end(key)  # least recently used goes first
                stats.queries += 1
                stats.cache_hits += 1
                reply: bytes | None = data[:2] + entry
            elif entry is None and not replayed and (reply := cased(table, data)) is not None:
                # 0x20: this question in another spelling, kept under its lowered bytes
                # (before the ECS lookups: 2.0 -> 1.46 us per answer in process).
                stats.queries += 1
                stats.cache_hits += 1
            else:
                if entry is not None:
                    table.move_to_end(key)
                reply = answer_entry(entry, data, addr[0], True, state, stats, cased_tried=True)
            if reply is None:
                continue
            if limiter is not None:
                reply = limiter.allow(addr[0], data, reply, now, state.zones)
                if reply is None:
                    continue
            count_answer(answers, data, reply)
            out.append((reply, addr))
        if refused:
            assert limiter is not None  # only a limiter refuses
            for data, addr in refused:  # cached replies to networks over their rate
                reply = answer(data, addr[0], True, state, stats)
                if reply is not None:
                    reply = limiter.charge(addr[0], data, reply, now, state.zones)
                if reply is not None:
                    count_answer(answers, data, reply)
                    out.append((reply, addr))
        if out:
            lost, last = self.io.send(out)
            dropped += lost
            error = last or error
        if dropped:  # a full send buffer or unreachable clients
            stats.dropped += dropped
            log.debug("UDP send failed for %d replies: %s", dropped, os.strerror(error))


class DnsServer:
    """UDP and TCP listeners on a set of addresses, answering from `state()`."""

    def __init__(
        self,
        state: StateGetter,
        stats: Stats,
        *,
        tcp_idle_timeout: float = 10.0,
        tcp_max_connections: int = 256,
        tcp_message_timeout: float = 3.0,
        tcp_max_lifetime: float = 120.0,
        tcp_max_queued: int = 256 * 1024,
        reuseport: bool = False,
        rate_limit: RateLimit | None = None,
        share: int = 1,
    ) -> None:
        self.state = state
        self.limiter: RateLimiter | None = None
        self.share = share  # DNS workers answering beside this one (each allows its share)
        self.reuseport = reuseport  # a DNS worker: one of several sockets on the same port
        self.stats = stats
        self._listeners: list[UdpListener] = []
        if rate_limit is not None:
            self.rate_limit(rate_limit)
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_max_connections = tcp_max_connections
        self.tcp_message_timeout = tcp_message_timeout
        self.tcp_max_lifetime = tcp_max_lifetime
        self.tcp_max_queued = tcp_max_queued
        self.tcp_connections = 0
        self.tcp_budget = TCP_TURN_BUDGET
        self._refill_pending = False
        self._udp: list[socket.socket] = []
        self._tcp: list[TcpAcceptor] = []
        # Open connections, least recently useful first (O(1) to move and to pop).
        self._tcp_conns: OrderedDict[TcpConnection, None] = OrderedDict()
        self.bound: list[ListenAddress] = []

    def rate_limit(self, settings: RateLimit) -> None:
        """Apply `server.rate_limit` (on start and reload); unchanged settings keep
        the table, so a reload does not hand a flood a fresh allowance."""
        if self.limiter is not None and self.limiter.settings == settings:
            return
        self.limiter = RateLimiter(settings, self.stats, self.share) if settings.enabled else None
        for listener in self._listeners:  # the replay in C asks the same limiter
            listener.admit = self.limiter.admit if self.limiter is not None else None

    def spend(self) -> bool:
        """One TCP message's share of this turn of the loop. Many connections ready at
        once (100 pipelining clients held the loop 20-45 ms, and every UDP answer
        with it) answer the rest on the next turns, after the UDP batch."""
        if self.tcp_budget <= 0:
            return False
        self.tcp_budget -= 1
        if not self._refill_pending:
            self._refill_pending = True
            asyncio.get_running_loop().call_soon(self._refill)  # runs before the deferred batches
        return True

    def _refill(self) -> None:
        self._refill_pending = False
        self.tcp_budget = TCP_TURN_BUDGET

    def evict_one(self) -> bool:
        """Close the connection that answered nothing for longest (a slow or idle one,
        never a busy one while another is idle) to admit a new client."""
        oldest = next(iter(self._tcp_conns), None)
        if oldest is None:
            return False
        oldest.close("evicted")
        return True

    async def start(self, addresses: tuple[ListenAddress, ...]) -> None:
        """Bind every address (UDP then TCP on the same port); port 0 picks a free one."""
        warn_if_unbuilt()
        try:
            for address in addresses:
                await self._bind(address)
        except BaseException:
            await self.stop()
            raise

    async def _bind(self, address: ListenAddress) -> None:
        loop = asyncio.get_running_loop()
        udp, tcp_sock = bind_pair(address, reuseport=self.reuseport)
        server = TcpAcceptor(tcp_sock, lambda conn, source: TcpConnection(self, conn, source))
        try:
            server.start()
        except BaseException:
            udp.close()
            tcp_sock.close()
            raise
        listener = UdpListener(udp, self)
        loop.add_reader(udp.fileno(), listener)  # the listener (its C half, where built) is the callback
        self._udp.append(udp)
        self._listeners.append(listener)
        self._tcp.append(server)
        bound = ListenAddress(address.host, udp.getsockname()[1])
        self.bound.append(bound)
        log.info("DNS listening on %s (UDP through %s, and TCP)", bound, listener.io.kind)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for udp in self._udp:
            loop.remove_reader(udp.fileno())
            udp.close()
        for server in self._tcp:
            server.stop()
        for conn in list(self._tcp_conns):
            conn.abort()
        await asyncio.sleep(0)  # the aborted connections' callbacks run
        self._udp.clear()
        self._listeners.clear()
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
    proto = "UDP"
    try:
        return _bind_pair(address, family, reuseport)
    except ListenError:
        raise
    except OSError as exc:
        proto = "TCP" if getattr(exc, "geodns_tcp", False) else proto
        raise listen_failure(exc, address.host, address.port, proto) from None


def _bind_pair(address: ListenAddress, family: int, reuseport: bool) -> tuple[socket.socket, socket.socket]:
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
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TCP_SNDBUF)
                tcp.bind((address.host, port))
            except OSError as exc:
                tcp.close()
                if address.port == 0:
                    udp.close()
                    continue  # the UDP port's TCP twin is taken: try another port
                exc.geodns_tcp = True  # type: ignore[attr-defined] # for the message: which half failed
                raise
        except BaseException:
            udp.close()
            raise
        return udp, tcp
    raise ListenError(f"no free port with both UDP and TCP available on {address.host}")


def reserve(address: ListenAddress) -> tuple[socket.socket, ListenAddress]:
    """Hold a port for DNS workers: a TCP socket bound with SO_REUSEPORT that never
    listens (so it takes no connection and no datagram), on a port whose UDP twin
    was free. Workers bind their own sockets beside it once ready to answer, so no
    query waits in the queue of a worker still starting."""
    udp, tcp = bind_pair(address, reuseport=True)
    udp.close()
    return tcp, ListenAddress(address.host, tcp.getsockname()[1])


def without_missing_ipv6(addresses: tuple[ListenAddress, ...]) -> tuple[ListenAddress, ...]:
    """The listen addresses minus IPv6 ones on a host that has no IPv6 (a container
    or a kernel with it disabled), each skipped with a WARNING, so the shipped
    example (127.0.0.1 and ::1) starts everywhere. Never all of them: when nothing
    would be left, binding raises the error itself, naming the cause."""
    problems = {a: _ipv6_problem(a.host) for a in addresses if a.family_v6}
    kept = tuple(a for a in addresses if problems.get(a) is None)
    if not kept:
        return addresses
    for address, problem in problems.items():
        if problem is not None:
            told = listen_failure(problem, address.host, address.port, "UDP and TCP")
            log.warning("not listening: %s; serving on the other addresses", told.strerror)
    return kept


def _ipv6_problem(host: str) -> OSError | None:
    """Why this host cannot have an IPv6 socket on `host`, when the reason is that
    it has no IPv6 there at all (any other error is for the real bind to report)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            return exc
    return None
