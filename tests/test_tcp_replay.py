"""The C half of a TCP connection (`_netio.TcpSession`), on real loopback TCP
sockets: what the cache replays goes out framed, in order, with the client's ID,
counted, and moves the idle deadline and the eviction order; everything else
(a miss and what follows it, a partial message, a short frame, replies the
kernel did not take, the end of the stream, a reset, a bug) reaches the Python
connection with the bytes it needs. And a daemon answers the same TCP stream
byte for byte alike with the C half and without it."""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import pytest

from geodns.dns import native
from geodns.dns.fastcache import AnswerCache, PerSubnet
from geodns.dns.handler import Stats
from tests.dnsclient import framed
from tests.replays import ASKED, ask_tcp, pool_daemon_replies, query, stored_reply

pytestmark = pytest.mark.skipif(
    native.UNAVAILABLE is not None and os.environ.get("GEODNS_REQUIRE_TOOLS") != "1",
    reason=f"C extension not built: {native.UNAVAILABLE}",
)
A, NXDOMAIN = 1, 3
IDLE = 7.0


def _session_type() -> Any:
    from geodns.dns import _netio  # type: ignore[attr-defined]

    class Probe(_netio.TcpSession):  # type: ignore[misc]
        """A session whose Python half records what reaches it."""

        def __init__(self, sock: socket.socket, cache: AnswerCache, stats: Stats) -> None:
            self.fd = sock.fileno()
            self.buf = bytearray()
            self.pending = bytearray()
            self.replay = 1
            self.batch = 8
            self.state = lambda: SimpleNamespace(cache=cache)
            self.stats = stats
            self.order: OrderedDict[object, None] = OrderedDict()
            self.idle_timeout = IDLE
            self.calls: list[tuple[Any, ...]] = []

        def _serve(self, read: int) -> None:
            self.calls.append(("serve", read))

        def _after(self, answered: int, unsent: bytes | None, closed: int, continuing: int) -> None:
            self.calls.append(("after", answered, unsent, closed, continuing))

        def _failed(self, exc: BaseException) -> None:
            self.calls.append(("failed", exc))

    return Probe


class Rig:
    """A connected pair on loopback: the server's end non-blocking, as the daemon's."""

    def __init__(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.client = socket.create_connection(listener.getsockname(), timeout=2)
            self.server, _ = listener.accept()
        self.server.setblocking(False)
        self.server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.cache = AnswerCache()
        self.stats = Stats()
        self.session = _session_type()(self.server, self.cache, self.stats)
        self.session.order[self.session] = None
        self.session.order["newer"] = None

    def send(self, data: bytes) -> None:
        """Send and wait until the server's socket holds it all."""
        self.client.sendall(data)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            select.select([self.server], [], [], 0.1)
            waiting = self.server.recv(65536, socket.MSG_PEEK)
            if len(waiting) >= len(data):
                return
        raise AssertionError("the data did not arrive")

    def replies(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            (length,) = struct.unpack("!H", self._exactly(2))
            out.append(self._exactly(length))
        return out

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.client.recv(count - len(data))
            assert chunk, "closed"
            data += chunk
        return data

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    try:
        yield made
    finally:
        made.close()


def _hit(rig: Rig, name: str, qid: int, rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> tuple[bytes, bytes]:
    wire = query(name, qid)
    rig.cache.tcp[wire[2:]] = stored = stored_reply(wire, rcode, None if rcode else "192.0.2.7")
    return wire, stored


def test_a_cached_reply_goes_out_framed_counted_and_moves_the_deadline(rig: Rig) -> None:
    wire, stored = _hit(rig, "nope.example.test.", 0x1234, dns.rcode.NXDOMAIN)
    rig.cache.tcp[b"another key"] = b"another reply"
    rig.send(framed(wire))
    before = time.monotonic()
    assert rig.session() is None
    assert rig.replies(1) == [b"\x12\x34" + stored]
    session, stats = rig.session, rig.stats
    assert session.calls == []  # all of it in C
    assert (stats.queries, stats.cache_hits, stats.answers) == (1, 1, {NXDOMAIN << 16 | A: 1})
    assert list(rig.cache.tcp)[-1] == wire[2:]  # the most recently used entry now
    assert list(session.order)[-1] is session  # useful lately: the last to be evicted
    assert session.served == 1 and session.reason == "idle"
    assert before + IDLE <= session.deadline <= time.monotonic() + IDLE
    assert not session.buf


def test_pipelined_hits_go_in_one_write_and_a_miss_hands_over_the_rest_in_order(rig: Rig) -> None:
    first, stored_first = _hit(rig, "a.example.test.", 1)
    second, stored_second = _hit(rig, "b.example.test.", 2)
    miss = query("miss.example.test.", 3)
    third, _ = _hit(rig, "c.example.test.", 4)
    rig.send(framed(first) + framed(second) + framed(miss) + framed(third))
    rig.session()
    assert rig.replies(2) == [b"\x00\x01" + stored_first, b"\x00\x02" + stored_second]
    # The miss is the Python path's, and so is what follows it: replies stay in order.
    assert rig.session.calls == [("after", 2, None, 0, 0)]
    assert rig.session.buf == framed(miss) + framed(third)
    assert rig.stats.cache_hits == 2


def test_a_message_split_across_reads_is_kept_then_answered(rig: Rig) -> None:
    wire, stored = _hit(rig, "split.example.test.", 9)
    message = framed(wire)
    rig.send(message[:1])  # even the length prefix split
    rig.session()
    assert rig.session.calls == [("after", 0, None, 0, 0)] and rig.session.buf == message[:1]
    rig.send(message[1:7])
    rig.session()
    assert rig.session.calls[-1] == ("after", 0, None, 0, 1)  # a message begun: continuing
    rig.send(message[7:])
    rig.session()
    assert rig.replies(1) == [b"\x00\x09" + stored]
    assert len(rig.session.calls) == 2 and not rig.session.buf


def test_at_most_a_batch_per_readiness(rig: Rig) -> None:
    rig.session.batch = 2
    hits = [_hit(rig, f"h{i}.example.test.", i) for i in range(5)]
    rig.send(b"".join(framed(wire) for wire, _ in hits))
    rig.session()
    assert rig.replies(2) == [wire[:2] + stored for wire, stored in hits[:2]]
    assert rig.session.calls == [("after", 2, None, 0, 0)]
    assert rig.session.buf == b"".join(framed(wire) for wire, _ in hits[2:])
    # The Python half answers on (the next turn of the loop) through serve(), no read.
    assert rig.session.serve(rig.cache, rig.stats, 8, 0, 0) == (3, None, 0)
    assert rig.replies(3) == [wire[:2] + stored for wire, stored in hits[2:]]


def test_spliced_replies_are_framed_with_their_whole_length(rig: Rig) -> None:
    """0x20 and ECS replies go out in pieces (ID, kept reply, the client's spelling
    or subnet): the length prefix counts them all."""
    lower = query("fo.example.test.", 1)
    rig.cache.tcp[lower[2:]] = stored_reply(lower, address="192.0.2.11")
    mixed = query("fO.ExAmplE.TEST.", 2)
    geo = query("geo.example.test.", 3, ("198.51.100.0", 24))
    entry = rig.cache.tcp[geo[2:-3]] = PerSubnet()
    kept = dns.message.make_response(dns.message.from_wire(geo))
    kept.use_edns(0, options=[dns.edns.ECSOption("203.0.113.0", 24, 24)])  # its first asker's
    entry.by_key[42] = kept.to_wire()[2:]
    rig.cache.subnet_keys[geo[-7:]] = 42
    rig.send(framed(mixed) + framed(geo))
    rig.session()
    spelled, placed = (dns.message.from_wire(r) for r in rig.replies(2))
    assert spelled.id == 2 and spelled.question[0].name.to_text() == "fO.ExAmplE.TEST."
    assert placed.id == 3 and placed.opt is not None
    assert placed.options[0].address == "198.51.100.0"  # the client's
    assert rig.session.calls == [] and rig.stats.geo == {42: 1}


def test_replies_waiting_already_keep_the_new_ones_behind_them(rig: Rig) -> None:
    wire, stored = _hit(rig, "held.example.test.", 5)
    rig.session.pending += b"queued earlier"
    rig.send(framed(wire))
    rig.session()
    assert rig.session.calls == [("serve", 1)]  # the Python half decides
    assert rig.session.serve(rig.cache, rig.stats, 8, 1, 1) == (1, framed(b"\x00\x05" + stored), 0)
    rig.client.setblocking(False)
    with pytest.raises(BlockingIOError):
        rig.client.recv(100)  # nothing sent


def test_what_the_kernel_does_not_take_comes_back_in_order(rig: Rig) -> None:
    """A client that does not read: the kernel's buffers fill, and the rest of the
    replies comes back as `unsent`, continuing exactly where the sent bytes stop."""
    rig.server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    rig.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = query("big.example.test.", 0)
    rig.cache.tcp[big[2:]] = stored = stored_reply(big) + b"\0" * 3000  # a reply of ~3 KB
    expected = b""
    unsent = None
    for qid in range(1, 2000):  # 6 MB at most, whatever the kernel's buffer sizes
        wire = qid.to_bytes(2, "big") + big[2:]
        expected += framed(wire[:2] + stored)
        rig.client.sendall(framed(wire))
        select.select([rig.server], [], [], 1)
        answered, unsent, closed = rig.session.serve(rig.cache, rig.stats, 8, 1, 0)
        assert (answered, closed) == (1, 0)
        if unsent is not None:
            break
    assert unsent is not None, "the kernel took 6 MB for a client that does not read"
    received = b""
    rig.client.settimeout(0.5)
    while len(received) < len(expected) - len(unsent):
        received += rig.client.recv(65536)
    assert received + unsent == expected


def test_the_end_of_the_stream_and_a_reset_reach_python(rig: Rig) -> None:
    wire, stored = _hit(rig, "last.example.test.", 6)
    rig.send(framed(wire))
    rig.client.shutdown(socket.SHUT_WR)  # the client closes its side after its last query
    rig.session()
    assert rig.replies(1) == [b"\x00\x06" + stored]  # answered: it may still read
    assert rig.session.calls == []
    rig.session()  # readable again: the end of the stream
    assert rig.session.calls == [("after", 0, None, -1, 0)]
    other = Rig()
    try:
        other.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        other.client.close()  # a reset
        select.select([other.server], [], [], 1)
        other.session()
        assert other.session.calls == [("after", 0, None, errno.ECONNRESET, 0)]
    finally:
        other.close()


def test_a_frame_shorter_than_a_header_is_left_for_python(rig: Rig) -> None:
    rig.send(framed(b"\x01\x02\x03"))
    rig.session()
    assert rig.session.calls == [("after", 0, None, 0, 0)]
    assert rig.session.buf == framed(b"\x01\x02\x03")


def test_a_bug_reaches_the_python_half_not_the_loop(rig: Rig) -> None:
    rig.session.state = SimpleNamespace  # a state without a cache: an AttributeError inside
    rig.send(framed(query("x.example.test.", 1)))
    assert rig.session() is None
    [(kind, exc)] = rig.session.calls
    assert kind == "failed" and isinstance(exc, AttributeError)


def test_with_the_replay_off_the_python_half_serves(rig: Rig) -> None:
    _hit(rig, "off.example.test.", 1)
    rig.session.replay = 0
    rig.send(framed(query("off.example.test.", 1)))
    rig.session()
    assert rig.session.calls == [("serve", 1)] and rig.stats.queries == 0


def test_a_daemon_answers_tcp_alike_with_the_c_half_and_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same stream over TCP (one at a time, then pipelined in one write) to a
    daemon with the C half and one answering in Python: the same bytes, in the same
    order, counted the same."""
    in_c, c_stats = pool_daemon_replies(tmp_path, True, monkeypatch, ask_tcp)
    in_python, py_stats = pool_daemon_replies(tmp_path, False, monkeypatch, ask_tcp)
    assert len(in_c) == len(in_python) == 2 * len(ASKED)
    for i, (c, py) in enumerate(zip(in_c, in_python, strict=True)):
        assert c == py, (i, dns.message.from_wire(c), dns.message.from_wire(py))
    for name in ("queries", "cache_hits", "answers", "geo"):
        assert getattr(c_stats, name) == getattr(py_stats, name), name
    assert c_stats.cache_hits >= len(ASKED)  # the pipelined half is all replays
