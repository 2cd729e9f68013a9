"""DNS over TCP (RFC 7766): one object per client connection, its C half the
answer cache's replay (the DnsServer in server.py owns the slots, the budget and
the eviction order; tcpaccept.py takes the connections)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from geodns.dns import native
from geodns.dns.fastcache import AnswerCache
from geodns.dns.fastpath import answer
from geodns.dns.handler import ServingState, Stats, count_answer

if TYPE_CHECKING:
    from geodns.dns.server import DnsServer

log = logging.getLogger(__name__)

TCP_BATCH = 8  # pipelined messages of one connection per turn: a fresh client waits one round, not 64 each
# TCP messages answered in Python per turn of the loop, all connections together (a miss
# costs 20-100 us). Replays in C are bounded by TCP_BATCH per connection and turn instead:
# 100 clients pipelining and never reading held the loop at most 3 ms (bench/abuse.py).
TCP_TURN_BUDGET = 128
TCP_READ = 65536  # bytes read per readiness, as a stream transport reads
# Replies waiting for a client beyond this (or tcp_max_queued if lower) stop the reading of
# its queries until it has read three quarters of them.
HIGH_WATER = 64 * 1024
DNS_HEADER = 12


class PySession:
    """What the C extension's TcpSession holds, for a build without it: the loop
    calls the connection, which answers in Python."""

    fd: int
    replay: int  # answer in C when readable (never here)
    batch: int
    served: int  # messages answered so far
    deadline: float  # close at this time of the loop's clock...
    timer_at: float  # ...checked by the timer, which wakes at this time
    idle_timeout: float
    reason: str  # ...for this reason
    buf: bytearray  # bytes received and not answered yet: a message begun, or a batch due
    pending: bytearray  # replies the kernel did not take yet, sent when writable
    state: Callable[[], ServingState]
    stats: Stats
    order: OrderedDict[TcpConnection, None]

    def __call__(self) -> None:
        self._serve(1)

    def _serve(self, read: int) -> None:
        raise NotImplementedError

    def serve(self, cache: AnswerCache, stats: Stats, limit: int, read: int, hold: int) -> Served:
        raise NotImplementedError("the C extension was not built")


Served = tuple[int, bytes | None, int]  # answered, unsent, closed (0, -1 end of stream, or an errno)

if TYPE_CHECKING:
    SessionBase = PySession
else:
    SessionBase = PySession if native.netio is None else native.netio.TcpSession


class TcpConnection(SessionBase):
    """DNS over TCP (RFC 7766): 2-byte length framing, pipelined queries answered
    in order, prefixes split across segments. The client's socket is read and
    written through the loop's `add_reader`/`add_writer`, not a stream transport,
    and the loop calls the connection itself when it is readable: where the C
    extension is built, its C half (`_tcpserve.c`) reads, answers what the answer
    cache replays and writes, and moves the idle deadline, all in C; only what it
    cannot answer (misses, partial messages, short frames), what the kernel did
    not take and the end of the stream come here.
    Through uvloop's stream transport a cached answer cost ~9 us of Python and
    loop per message above the kernel's own work.

    Slow or hostile clients cannot hold a slot: each message must arrive whole
    within `tcp_message_timeout` of its first byte (a byte a second does not keep
    it alive), an idle connection is closed after `tcp_idle_timeout`, any after
    `tcp_max_lifetime`, and a client that leaves more than `tcp_max_queued` bytes
    of replies unread (or stops reading for a message timeout) is dropped. When
    every slot is taken, the connection that answered nothing for longest is
    closed to admit the new one (as Knot and Unbound do), rather than refusing."""

    def __init__(self, server: DnsServer, sock: socket.socket, source: str) -> None:
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        self.source = source
        self.buf = bytearray()
        self.pending = bytearray()
        self.loop = asyncio.get_running_loop()
        self.replay = int(native.enabled)
        self.batch = TCP_BATCH
        self.served = 0
        self.state = server.state
        self.stats = server.stats
        self.order = server._tcp_conns
        self.idle_timeout = server.tcp_idle_timeout
        # One timer for the idle, message and not-reading timeouts: moving the deadline
        # later (every answered message) only writes `deadline`; the timer, when it
        # fires early, sleeps again until it. A TimerHandle cancelled and made anew per
        # message was ~1 us of each TCP answer. The deadline is on the monotonic clock
        # (the loop's, and the one the C half reads).
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline = 0.0
        self.reason = ""
        self.lifetime: asyncio.TimerHandle | None = None
        self.counted = False  # holds one of the server's slots
        self.open = True  # the socket is open
        self.paused = False  # the client does not read: neither do we
        self.queued = False  # a batch of its messages is due on the next turn of the loop
        self.reading = False
        self.writing = False
        self.eof = False  # the client closed its side: answer what came, then close
        self.high = min(HIGH_WATER, server.tcp_max_queued)

    def start(self) -> None:
        """Take a slot (evicting the least useful connection when all are taken) and read."""
        server = self.server
        if server.tcp_connections >= server.tcp_max_connections and not server.evict_one():
            self._shut()
            return
        server.tcp_connections += 1
        server._tcp_conns[self] = None  # newest last: the first is the next to be evicted
        self.counted = True
        self.lifetime = self.loop.call_later(server.tcp_max_lifetime, self.close, "lifetime")
        self._arm(server.tcp_idle_timeout, "idle")
        self._reading()

    def _arm(self, seconds: float, reason: str) -> None:
        """Close with `reason` after `seconds` unless armed again before."""
        when = time.monotonic() + seconds
        self.deadline = when
        self.reason = reason
        if self.timer is None or self.timer_at > when:  # an earlier deadline: wake earlier
            if self.timer is not None:
                self.timer.cancel()
            self._wake_at(when)

    def _wake_at(self, when: float) -> None:
        self.timer_at = when
        self.timer = self.loop.call_later(max(0.0, when - time.monotonic()), self._expire)

    def _expire(self) -> None:
        if time.monotonic() < self.deadline:  # moved later since: sleep until then
            self._wake_at(self.deadline)
            return
        self.timer = None
        self.close(self.reason)

    def _serve(self, read: int) -> None:
        """Read (when the socket is readable) and answer: what the cache replays in C
        (where built), the rest here."""
        continuing = bool(self.buf)  # more bytes of a message already begun
        answered = closed = 0
        unsent: bytes | None = None
        if self.replay:
            hold = len(self.pending)  # replies wait already: the new ones go after them
            try:
                answered, unsent, closed = self.serve(self.state().cache, self.stats, self.batch, read, hold)
            except Exception as exc:  # noqa: BLE001 - a bug of ours: said and counted in _failed
                self._failed(exc)
                return
        elif read:
            closed = self._recv()
        self._after(answered, unsent, closed, int(continuing))

    def _after(self, answered: int, unsent: bytes | None, closed: int, continuing: int) -> None:
        """What follows a read and the C replay: queue what the kernel did not take,
        note the end of the stream, and answer the rest of the buffer here."""
        self.served += answered
        if unsent is not None and not self._queue(unsent):
            return
        if closed:
            if closed > 0:  # reset by the client: nothing more to read or to send
                self.abort()
                return
            self.eof = True
        self._answer(answered, bool(continuing))

    def _failed(self, exc: BaseException) -> None:
        """A bug of ours in the C replay: said loudly; this client goes, not the loop."""
        log.error("TCP replay failed for %s", self.source, exc_info=exc)
        self.stats.internal_errors += 1
        self.abort()

    def _recv(self) -> int:
        """Without the C extension: what the socket holds into the buffer; as serve()'s `closed`."""
        try:
            data = self.sock.recv(TCP_READ)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            return exc.errno or errno.EIO
        if not data:
            return -1
        self.buf += data
        return 0

    def _answer(self, answered: int, continuing: bool) -> None:
        """Answer the complete messages left in the buffer (`answered` already this
        turn), at most TCP_BATCH per turn of the loop: a client pipelining thousands
        of queries in one read must not hold the loop for everyone else (it held it
        35 ms)."""
        server, buf = self.server, self.buf
        if not self.counted:
            return
        replies: list[bytes] = []
        short = False
        if len(buf) >= 2 and not self.paused:
            state = self.state()
            stats = self.stats
            while len(buf) >= 2:
                length = (buf[0] << 8) | buf[1]
                if length < DNS_HEADER:
                    # Shorter than a DNS header: nothing to answer, and no reason to wait for
                    # this client's idle timeout.
                    short = True
                    break
                if len(buf) < 2 + length:
                    break
                # A connection's first message goes ahead of the budget: a fresh client is not
                # queued behind the pipelines of others (it waited 45 ms behind 100 of them).
                if answered >= TCP_BATCH or (self.served and not server.spend()):
                    self._later()
                    break
                message = bytes(buf[2 : 2 + length])
                del buf[: 2 + length]
                answered += 1
                self.served += 1
                reply = answer(message, self.source, False, state, stats)
                if reply is not None:
                    count_answer(stats.answers, message, reply)
                    replies += (len(reply).to_bytes(2, "big"), reply)
        if replies and not self._queue(b"".join(replies)):
            return
        if short:
            self.close("short")
            return
        if answered and not self.paused:
            self.order.move_to_end(self)  # useful lately: the last to be evicted
        self._reading()
        if self.paused or self.queued:
            return  # the not-reading timer stands, or the next batch sets the timer
        if self.eof:
            self._finish()
        elif buf:
            if answered or not continuing:
                # A new message began: it has this long to arrive whole, however it trickles.
                self._arm(server.tcp_message_timeout, "slow")
        else:
            self._arm(server.tcp_idle_timeout, "idle")

    def _queue(self, data: bytes) -> bool:
        """Send `data` after what waits already; False when that closed the connection."""
        if not self.pending:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # reset by the client
                self.abort()
                return False
            if sent == len(data):
                return True
            data = data[sent:]
            self.writing = True
            self.loop.add_writer(self.fd, self._on_writable)
        self.pending += data
        if len(self.pending) > self.server.tcp_max_queued:
            self.close("not_reading")
            return False
        if len(self.pending) > self.high and not self.paused:
            # A client that sends but does not read: stop reading its queries, and give it
            # a message timeout to start reading again.
            self.paused = True
            self._reading()
            self._arm(self.server.tcp_message_timeout, "not_reading")
        return True

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self.pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset by the client
            self.abort()
            return
        del self.pending[:sent]
        if not self.pending:
            self.writing = False
            self.loop.remove_writer(self.fd)
        if self.paused and len(self.pending) <= self.high // 4:
            self.paused = False
            if not self.queued:
                self._answer(0, False)  # what was left when it stopped reading; sets the timer
        elif not self.pending and self.eof and not self.queued:
            self._finish()

    def _later(self) -> None:
        """The rest of the buffer on the next turn of the loop, reading paused meanwhile."""
        self.queued = True
        self.loop.call_soon(self._next_batch)

    def _next_batch(self) -> None:
        self.queued = False
        if self.open:
            self._serve(0)

    def _reading(self) -> None:
        """Read from the client only when not paused for writing nor holding a batch."""
        wanted = self.open and not self.paused and not self.queued and not self.eof
        if wanted != self.reading:
            self.reading = wanted
            if wanted:
                self.loop.add_reader(self.fd, self)  # the connection is the callback
            else:
                self.loop.remove_reader(self.fd)

    def _finish(self) -> None:
        """The client closed its side and every complete message is answered: close once
        the replies are out (a partial message left has no one to finish it)."""
        if not self.pending:
            self.abort()

    def close(self, reason: str) -> None:
        """Give up on this client: its slot is free at once. Replies still queued are
        dropped (the client is slow, hostile or gone), and the socket closed."""
        self.server.stats.count_tcp_close(reason)
        self.abort()

    def abort(self) -> None:
        self._release()
        self._shut()

    def _release(self) -> None:
        for timer in (self.timer, self.lifetime):
            if timer is not None:
                timer.cancel()
        self.timer = self.lifetime = None
        if self.counted:
            self.counted = False
            self.server.tcp_connections -= 1
            self.server._tcp_conns.pop(self, None)

    def _shut(self) -> None:
        if not self.open:
            return
        self.open = False
        self._reading()
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)
        self.pending.clear()
        self.sock.close()
