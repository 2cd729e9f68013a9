"""DNS over TCP (RFC 7766): one protocol object per connection, and an acceptor
that takes a few connections per turn of the loop (the DnsServer in server.py
owns the slots, the budget and the eviction order)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from geodns.dns.fastpath import answer
from geodns.dns.handler import count_answer

if TYPE_CHECKING:
    from geodns.dns.server import DnsServer

log = logging.getLogger(__name__)

TCP_BATCH = 8  # pipelined messages of one connection per turn: a fresh client waits one round, not 64 each
TCP_TURN_BUDGET = 128  # TCP messages answered per turn of the loop, all connections together
TCP_ACCEPT_BATCH = 32  # connections accepted per turn of the loop
TCP_BACKLOG = 512
DNS_HEADER = 12


class TcpConnection(asyncio.Protocol):
    """DNS over TCP (RFC 7766): 2-byte length framing, pipelined queries answered
    in order, prefixes split across segments. A protocol rather than streams: no
    task per connection and no await per message, which halved TCP throughput.

    Slow or hostile clients cannot hold a slot: each message must arrive whole
    within `tcp_message_timeout` of its first byte (a byte a second does not keep
    it alive), an idle connection is closed after `tcp_idle_timeout`, any after
    `tcp_max_lifetime`, and a client that leaves more than `tcp_max_queued` bytes
    of replies unread (or stops reading for a message timeout) is dropped. When
    every slot is taken, the connection that answered nothing for longest is
    closed to admit the new one (as Knot and Unbound do), rather than refusing."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.source = "?"
        self.loop = asyncio.get_running_loop()
        # One timer for the idle, message and not-reading timeouts: moving the deadline
        # later (every answered message) only writes `deadline`; the timer, when it
        # fires early, sleeps again until it. A TimerHandle cancelled and made anew per
        # message was ~1 us of each TCP answer.
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline = 0.0
        self.deadline_reason = ""
        self.lifetime: asyncio.TimerHandle | None = None
        self.counted = False
        self.paused = False  # the client does not read: neither do we
        self.queued = False  # a batch of its messages is due on the next turn of the loop
        self.reading = True
        self.served = 0  # messages answered so far

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are duck-typed
        server = self.server
        if server.tcp_connections >= server.tcp_max_connections and not server.evict_one():
            self.transport.close()
            return
        server.tcp_connections += 1
        server._tcp_conns[self] = None  # newest last: the first is the next to be evicted
        self.counted = True
        peer = transport.get_extra_info("peername")
        self.source = peer[0] if peer else "?"
        # Writes beyond this pause our reading (`pause_writing`); see tcp_max_queued.
        self.transport.set_write_buffer_limits(high=min(64 * 1024, server.tcp_max_queued))
        self.lifetime = self.loop.call_later(server.tcp_max_lifetime, self.close, "lifetime")
        self._arm(server.tcp_idle_timeout, "idle")

    def _arm(self, seconds: float, reason: str) -> None:
        """Close with `reason` after `seconds` unless armed again before."""
        when = self.loop.time() + seconds
        self.deadline = when
        self.deadline_reason = reason
        if self.timer is None or self.timer_at > when:  # an earlier deadline: wake earlier
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = when
            self.timer = self.loop.call_at(when, self._expire)

    def _expire(self) -> None:
        if self.loop.time() < self.deadline:  # moved later since: sleep until then
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._expire)
            return
        self.timer = None
        self.close(self.deadline_reason)

    def data_received(self, data: bytes) -> None:
        continuing = bool(self.buf)  # more bytes of a message already begun
        self.buf += data
        if not self.queued:  # else a batch is due: it gets to these bytes
            self._answer(continuing)

    def _answer(self, continuing: bool) -> None:
        """Answer the complete messages in the buffer, at most TCP_BATCH per turn of
        the loop: a client pipelining thousands of queries in one read must not hold
        the loop for everyone else (it held it 35 ms)."""
        server, transport, buf = self.server, self.transport, self.buf
        if transport is None or not self.counted:
            return
        state = server.state()
        stats = server.stats
        answered = 0
        while len(buf) >= 2 and not self.paused:
            length = (buf[0] << 8) | buf[1]
            if length < DNS_HEADER:
                # Shorter than a DNS header: nothing to answer, and no reason to wait for
                # this client's idle timeout.
                self.close("short")
                return
            if len(buf) < 2 + length:
                break
            # A connection's first message goes ahead of the budget: a fresh client is not
            # queued behind the pipelines of others (it waited 45 ms behind 100 of them).
            if answered == TCP_BATCH or (self.served and not server.spend()):
                self._later()
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            answered += 1
            self.served += 1
            reply = answer(message, self.source, False, state, stats)
            if reply is not None:
                count_answer(stats.answers, message, reply)
                transport.write(len(reply).to_bytes(2, "big") + reply)
                if transport.get_write_buffer_size() > server.tcp_max_queued:
                    self.close("not_reading")
                    return
        if answered and not self.paused:
            server._tcp_conns.move_to_end(self)  # useful lately: the last to be evicted
        self._reading()
        if self.paused or self.queued:
            return  # the not-reading timer stands, or the next batch sets the timer
        if buf:
            if answered or not continuing:
                # A new message began: it has this long to arrive whole, however it trickles.
                self._arm(server.tcp_message_timeout, "slow")
        else:
            self._arm(server.tcp_idle_timeout, "idle")

    def _later(self) -> None:
        """The rest of the buffer on the next turn of the loop, reading paused meanwhile."""
        self.queued = True
        self.loop.call_soon(self._next_batch)

    def _next_batch(self) -> None:
        self.queued = False
        self._answer(False)

    def _reading(self) -> None:
        """Read from the client only when not paused for writing nor holding a batch."""
        wanted = not self.paused and not self.queued
        if wanted != self.reading and self.transport is not None and not self.transport.is_closing():
            self.reading = wanted
            if wanted:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def pause_writing(self) -> None:
        # A client that sends but does not read: stop reading its queries, and give it
        # a message timeout to start reading again.
        self.paused = True
        self._reading()
        self._arm(self.server.tcp_message_timeout, "not_reading")

    def resume_writing(self) -> None:
        self.paused = False
        if not self.queued:
            self._answer(False)  # what was left when it stopped reading; sets the timer

    def close(self, reason: str) -> None:
        """Give up on this client: its slot is free at once. Replies still queued are
        dropped unless the client is merely idle (then they are flushed first)."""
        self.server.stats.count_tcp_close(reason)
        self._release()
        transport = self.transport
        if transport is None:
            return
        if reason == "idle" and not transport.get_write_buffer_size():
            transport.close()
        else:
            transport.abort()

    def _release(self) -> None:
        for timer in (self.timer, self.lifetime):
            if timer is not None:
                timer.cancel()
        self.timer = self.lifetime = None
        if self.counted:
            self.counted = False
            self.server.tcp_connections -= 1
            self.server._tcp_conns.pop(self, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()

    def abort(self) -> None:
        self._release()
        if self.transport is not None:
            self.transport.abort()


class TcpAcceptor:
    """Accepts TCP connections a few per turn of the loop. The loop's own server
    accepts everything pending in one callback: 500 connections opened at once by
    an attacker held the loop for 30-100 ms, and every UDP answer with it."""

    def __init__(self, sock: socket.socket, factory: Callable[[], TcpConnection]) -> None:
        self.sock = sock
        self.factory = factory
        self.pending: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        self.sock.listen(TCP_BACKLOG)
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(TCP_ACCEPT_BATCH):  # the rest on the next turn, after everyone else
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, or the peer already gone
                log.debug("TCP accept failed: %s", exc)
                return
            conn.setblocking(False)
            task: asyncio.Task[object] = loop.create_task(self._connect(conn))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _connect(self, conn: socket.socket) -> object:
        try:
            return await asyncio.get_running_loop().connect_accepted_socket(self.factory, conn)
        except OSError as exc:
            log.debug("TCP connection lost while being set up: %s", exc)
            conn.close()
            return None

    def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
        for task in self.pending:
            task.cancel()
