"""What the replay tests share: queries and cached replies as the answer cache
keeps them, and a daemon serving pools asked the same questions with and
without the C extension."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from pathlib import Path

import dns.edns
import dns.message
import dns.rcode
import dns.rrset
import pytest

from geodns.config import load
from geodns.dns import native
from geodns.dns.handler import Stats
from tests.configs import POOL_RECORDS, POOLS, write_zone
from tests.conftest import start_daemon
from tests.dnsclient import framed


def query(name: str, qid: int, ecs: tuple[str, int] | None = None) -> bytes:
    options: list[dns.edns.Option] = [dns.edns.ECSOption(*ecs)] if ecs else []
    q = dns.message.make_query(name, "A", use_edns=0 if ecs else False, options=options)
    q.id = qid
    return q.to_wire()


def stored_reply(
    wire: bytes, rcode: dns.rcode.Rcode = dns.rcode.NOERROR, address: str | None = None
) -> bytes:
    """A reply to `wire` as the cache keeps it: without its ID."""
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if address:
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", address))
    return r.to_wire()[2:]


def pool_daemon_replies(
    tmp_path: Path, batched: bool, monkeypatch: pytest.MonkeyPatch, ask: Callable[[int], list[bytes]]
) -> tuple[list[bytes], Stats]:
    """What a daemon serving the pools config replies to `ask(port)`: with the C
    extension (`batched`) or over the socket module and the Python replay."""
    monkeypatch.setattr(native, "enabled", batched)
    folder = tmp_path / ("batched" if batched else "socket")
    folder.mkdir()
    write_zone(folder, POOL_RECORDS)
    # The SOA serial defaults to the zone file's mtime: the same for both daemons compared.
    os.utime(folder / "zones" / "example.test.yaml", (1_700_000_000, 1_700_000_000))
    (folder / "geodns.yaml").write_text(POOLS)

    async def run() -> tuple[list[bytes], Stats]:
        running = await start_daemon(load(folder / "geodns.yaml"))
        try:
            replies = await asyncio.to_thread(ask, running.v4.port)
            return replies, running.daemon.stats
        finally:
            await running.daemon.stop()

    return asyncio.run(run())


QUERIES = [
    query("fo.example.test.", 0),
    query("Fo.EXAMPLE.test.", 0),  # 0x20
    query("nope.example.test.", 0),
    query("geo.example.test.", 0),  # per client (the source address)
    query("geo.example.test.", 0, ("127.0.5.0", 24)),  # the topology rule's subnet
    query("geo.example.test.", 0, ("10.1.2.0", 24)),
    query("geo.example.test.", 0, ("10.9.9.0", 24)),  # the same decision, another subnet
    query("geo.example.test.", 0, ("2001:db8:1::", 56)),
    query("fo.example.test.", 0, ("10.1.2.0", 24)),  # an answer the subnet does not shape
]
# Each query three times (the first fills the cache), then the weighted name 40 times
# (its variants drawn, then replayed in turn).
ASKED = [q for q in QUERIES for _ in range(3)] + [query("wt.example.test.", 0)] * 40


def ask_udp(port: int) -> list[bytes]:
    """ASKED over UDP, one after the other, each with its own ID."""
    replies = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect(("127.0.0.1", port))
        for qid, wire in enumerate(ASKED, start=1):
            s.send(qid.to_bytes(2, "big") + wire[2:])
            replies.append(s.recv(4096))
    return replies


def ask_tcp(port: int) -> list[bytes]:
    """ASKED over one TCP connection, each with its own ID: one at a time, then all
    of them again pipelined in one write (read back in order)."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        for qid, wire in enumerate(ASKED, start=1):
            s.sendall(framed(qid.to_bytes(2, "big") + wire[2:]))
            replies.append(_read_framed(s))
        s.sendall(b"".join(framed(qid.to_bytes(2, "big") + w[2:]) for qid, w in enumerate(ASKED, start=1)))
        replies += [_read_framed(s) for _ in ASKED]
    return replies


def _read_framed(s: socket.socket) -> bytes:
    length = int.from_bytes(_read_exactly(s, 2), "big")
    return _read_exactly(s, length)


def _read_exactly(s: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = s.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed before the reply was whole")
        data += chunk
    return data
