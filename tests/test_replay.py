"""Cached replies replayed in C (`_netio.serve`), on real loopback sockets: what it
sends is what the Python path would send, byte for byte, counted the same; what it
cannot replay comes back for the Python path; the rate limiter decides every reply."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dns.edns
import dns.message
import dns.rcode
import pytest

from geodns.dns import native
from geodns.dns.fastcache import VARIANTS, AnswerCache, PerClient, PerSubnet, Rotating
from geodns.dns.handler import Stats
from geodns.dns.udpio import Admit
from tests.replays import QUERIES, ask_udp, pool_daemon_replies, query, stored_reply

pytestmark = pytest.mark.skipif(
    native.UNAVAILABLE is not None and os.environ.get("GEODNS_REQUIRE_TOOLS") != "1",
    reason=f"C extension not built: {native.UNAVAILABLE}",
)
A, NXDOMAIN = 1, 3

if native.UNAVAILABLE is None:
    from geodns.dns import _netio  # type: ignore[attr-defined]


@dataclass
class Rig:
    """The server's socket (non-blocking, as the daemon's), a client, an empty cache."""

    server: socket.socket
    client: socket.socket
    cache: AnswerCache = field(default_factory=AnswerCache)
    stats: Stats = field(default_factory=Stats)

    def serve(self, admit: Admit | None = None, now: float = 0.0) -> tuple[Any, ...]:
        served: tuple[Any, ...] = _netio.serve(self.server.fileno(), self.cache, self.stats, admit, now)
        return served


@pytest.fixture
def rig() -> Iterator[Rig]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        client.connect(server.getsockname())
        yield Rig(server, client)
    finally:
        server.close()
        client.close()


def test_a_cached_reply_goes_out_with_the_clients_id_counted_and_touched(rig: Rig) -> None:
    client, cache, stats = rig.client, rig.cache, rig.stats
    wire = query("nope.example.test.", 0x1234)
    cache.udp[wire[2:]] = stored = stored_reply(wire, dns.rcode.NXDOMAIN)
    cache.udp[b"another key"] = b"another reply"
    client.send(wire)
    assert rig.serve() == ([], [], 0, 0)
    assert client.recv(512) == b"\x12\x34" + stored
    assert (stats.queries, stats.cache_hits, stats.answers) == (1, 1, {NXDOMAIN << 16 | A: 1})
    assert list(cache.udp)[-1] == wire[2:]  # the most recently used now


def test_a_mixed_case_name_gets_its_own_spelling_back(rig: Rig) -> None:
    client, cache, stats = rig.client, rig.cache, rig.stats
    lower = query("fo.example.test.", 1)
    cache.udp[lower[2:]] = stored = stored_reply(lower, address="192.0.2.11")
    mixed = query("fO.ExAmplE.TEST.", 2)
    client.send(mixed)
    assert rig.serve() == ([], [], 0, 0)
    got = client.recv(512)
    end = mixed.index(b"\0", 12)
    assert got == mixed[:2] + stored[:10] + mixed[12:end] + stored[end - 2 :]
    assert dns.message.from_wire(got).question[0].name.to_text() == "fO.ExAmplE.TEST."
    assert stats.cache_hits == 1


def test_a_random_answer_is_replayed_in_turn_once_every_variant_is_drawn(rig: Rig) -> None:
    client, cache, stats = rig.client, rig.cache, rig.stats
    wire = query("wt.example.test.", 5)
    variants = [stored_reply(wire, address=f"192.0.2.{i}") for i in range(VARIANTS)]
    entry = cache.udp[wire[2:]] = Rotating(variants[0])
    client.send(wire)
    rest, refused, _, _ = rig.serve()
    assert [data for data, _ in rest] == [wire] and not refused  # drawing is the Python path's
    assert stats.cache_hits == 0
    entry.replies = list(variants)
    for _ in range(VARIANTS + 1):
        client.send(wire)
    assert rig.serve() == ([], [], 0, 0)
    got = [client.recv(512)[2:] for _ in range(VARIANTS + 1)]
    assert got == variants[1:] + variants[:2]  # as Rotating.next serves them
    assert entry.index == 1 and stats.cache_hits == VARIANTS + 1


@pytest.mark.parametrize(("subnet", "size"), [("198.51.100.0", 24), ("2001:db8:0:ab00::", 56)])
def test_a_geo_answer_kept_per_decision_gets_the_clients_subnet(rig: Rig, subnet: str, size: int) -> None:
    client, cache, stats = rig.client, rig.cache, rig.stats
    length = size // 8
    wire = query("geo.example.test.", 9, (subnet, size))
    entry = cache.udp[wire[2:-length]] = PerSubnet()
    # The reply kept for decision 42 carries another subnet's address (its first asker).
    entry.by_key[42] = stored = stored_reply(wire, address="192.0.2.22")[:-length] + b"\xff" * length
    client.send(wire)
    rest, _, _, _ = rig.serve()
    assert [data for data, _ in rest] == [wire]  # this subnet not placed yet: the Python path places it
    cache.subnet_keys[wire[-length - 4 :]] = 42
    client.send(wire)
    assert rig.serve() == ([], [], 0, 0)
    assert client.recv(512) == wire[:2] + stored[:-length] + wire[-length:]
    assert stats.geo == {42: 1} and stats.cache_hits == 1
    stray = bytearray(wire)
    stray[-length - 2] = size - 1  # a shorter prefix, so the address's last bit is past it
    stray[-1] |= 1
    cache.subnet_keys[bytes(stray[-length - 4 :])] = 42
    client.send(bytes(stray))
    rest, _, _, _ = rig.serve()
    assert [data for data, _ in rest] == [bytes(stray)]  # the full path answers FORMERR


def test_what_it_cannot_replay_comes_back_for_the_python_path(rig: Rig) -> None:
    client, cache, stats = rig.client, rig.cache, rig.stats
    per_client = query("geo.example.test.", 3)
    cache.udp[per_client[2:]] = PerClient()
    sent = [b"short", query("unknown.example.test.", 4), per_client]
    for data in sent:
        client.send(data)
    rest, refused, dropped, _ = rig.serve()
    assert [data for data, _ in rest] == sent and not refused and not dropped
    assert stats.queries == 0
    # Their addresses are the ones send() replies to without parsing them back.
    assert _netio.send(rig.server.fileno(), socket.AF_INET, [(b"re", rest[0][1])]) == (0, 0)
    assert client.recv(512) == b"re"


def test_the_rate_limiter_decides_every_reply(rig: Rig) -> None:
    client, cache, stats = rig.client, rig.cache, rig.stats
    wire = query("fo.example.test.", 7)
    cache.udp[wire[2:]] = stored = stored_reply(wire, address="192.0.2.11")
    asked: list[tuple[str, float]] = []

    def admit(host: str, now: float) -> bool:
        asked.append((host, now))
        return len(asked) == 1  # the first goes as it is, the second is over the rate

    client.send(wire)
    client.send(wire)
    rest, refused, _, _ = rig.serve(admit, 12.5)
    assert asked == [("127.0.0.1", 12.5), ("127.0.0.1", 12.5)]
    assert not rest and [data for data, _ in refused] == [wire]
    assert client.recv(512) == wire[:2] + stored
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(512)  # the refused one is the limiter's to charge, not sent
    assert stats.cache_hits == 1  # the Python path counts the other when it answers it

    verdicts = iter([True])

    def broken(host: str, now: float) -> bool:
        try:
            return next(verdicts)
        except StopIteration:
            raise RuntimeError("limiter bug") from None

    client.settimeout(2)
    client.send(wire)
    client.send(wire)
    with pytest.raises(RuntimeError, match="limiter bug"):
        rig.serve(broken)
    assert client.recv(512) == wire[:2] + stored  # what was answered before the error still goes


def test_replayed_in_c_is_byte_for_byte_what_the_python_loop_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same queries to a daemon on the C replay and one on the socket I/O (whose
    loop replays in Python): the same bytes, in the same order (the weighted name's
    variants too), counted the same."""
    in_c, c_stats = pool_daemon_replies(tmp_path, True, monkeypatch, ask_udp)
    in_python, py_stats = pool_daemon_replies(tmp_path, False, monkeypatch, ask_udp)
    assert len(in_c) == len(in_python) == 3 * len(QUERIES) + 40
    for i, (c, py) in enumerate(zip(in_c, in_python, strict=True)):
        assert c == py, (i, dns.message.from_wire(c), dns.message.from_wire(py))
    assert len({r[2:] for r in in_c[-40:]}) > 1  # the weighted answers do vary
    for name in ("queries", "cache_hits", "answers", "geo"):
        assert getattr(c_stats, name) == getattr(py_stats, name), name
    assert c_stats.cache_hits >= 2 * len(QUERIES) - 3  # replays, not the full path again


def _reader(rig: Rig, admit: Admit | None = None) -> Any:
    class Probe(_netio.UdpReader):  # type: ignore[misc]
        """A UDP reader whose Python half records what reaches it."""

        def __init__(self) -> None:
            self.fd = rig.server.fileno()
            self.replay = 1
            self.state = lambda: SimpleNamespace(cache=rig.cache)
            self.stats = rig.stats
            self.admit = admit
            self.calls: list[tuple[Any, ...]] = []

        def _serve(self) -> None:
            self.calls.append(("serve",))

        def _rest(self, *args: Any) -> None:
            self.calls.append(("rest", *args))

        def _failed(self, exc: BaseException) -> None:
            self.calls.append(("failed", exc))

    return Probe()


def test_the_loop_calls_the_reader_which_reaches_python_only_for_what_is_left(rig: Rig) -> None:
    client, cache = rig.client, rig.cache
    wire = query("fo.example.test.", 0x4242)
    cache.udp[wire[2:]] = stored = stored_reply(wire, address="192.0.2.1")
    reader = _reader(rig)
    client.send(wire)
    assert reader() is None
    assert client.recv(512) == wire[:2] + stored and reader.calls == []  # all of it in C
    miss = query("miss.example.test.", 7)
    client.send(miss)
    reader()
    [(kind, state, now, rest, refused, dropped, error)] = reader.calls
    assert kind == "rest" and state.cache is cache and now == 0.0  # no limiter: no clock read
    assert [data for data, _ in rest] == [miss] and (refused, dropped, error) == ([], 0, 0)


def test_the_reader_asks_the_limiter_with_its_own_clock_and_hands_back_the_refused(rig: Rig) -> None:
    wire = query("fo.example.test.", 3)
    rig.cache.udp[wire[2:]] = stored_reply(wire, address="192.0.2.1")
    asked: list[tuple[str, float]] = []

    def refuse(host: str, now: float) -> bool:
        asked.append((host, now))
        return False

    reader = _reader(rig, refuse)
    rig.client.send(wire)
    before = time.monotonic()
    reader()
    [(kind, _state, now, rest, refused, _, _)] = reader.calls
    assert kind == "rest" and not rest and [data for data, _ in refused] == [wire]
    assert asked == [("127.0.0.1", now)] and before <= now <= time.monotonic()  # time.monotonic's clock


def test_the_reader_without_replay_and_on_errors_goes_to_python(rig: Rig) -> None:
    reader = _reader(rig)
    reader.replay = 0
    reader()
    assert reader.calls == [("serve",)]
    reader = _reader(rig)
    reader.state = SimpleNamespace  # a state without a cache: a bug of ours
    reader()
    assert [kind for kind, *_ in reader.calls] == ["failed"] and isinstance(
        reader.calls[0][1], AttributeError
    )
    reader = _reader(rig)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        reader.fd = gone.fileno()
    reader()  # a closed descriptor: the socket's error, for the Python half to log
    assert [kind for kind, *_ in reader.calls] == ["failed"] and isinstance(reader.calls[0][1], OSError)
