"""The answer cache: replays exactly what the full path said, forgets on every
state change, keeps weighted answers random and geo answers per client."""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import pytest
import pytest_asyncio

from geodns.config import Config, load
from geodns.daemon import Daemon, serving_state
from geodns.dns.fastcache import AnswerCache
from geodns.dns.fastpath import answer
from geodns.dns.handler import Stats
from geodns.health.snapshot import HealthSnapshot
from tests.configs import write_zone
from tests.conftest import Running, start_daemon
from tests.dnsclient import Endpoint

# Deterministic answers only: a weighted or "all" pool rotates through variants on purpose.
QUERIES = [
    ("mail.example.test.", "A", {}),
    ("MaIl.ExAmPlE.tEsT.", "A", {}),
    ("nope.example.test.", "A", {"use_edns": 0}),
    ("anything.wild.example.test.", "A", {"use_edns": 0, "want_dnssec": True}),
    ("sub.example.test.", "A", {}),
    (
        "to-other-zone.example.test.",
        "A",
        {"use_edns": 0, "options": [dns.edns.GenericOption(dns.edns.NSID, b"")]},
    ),
    ("big.example.test.", "TXT", {"use_edns": False}),
    ("example.org.", "A", {}),
    ("example.test.", "ANY", {}),
]


def raw(where: Endpoint, wire: bytes, tcp: bool) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.connect((where.host, where.port))
        if tcp:
            s.sendall(len(wire).to_bytes(2, "big") + wire)
            length = int.from_bytes(s.recv(2), "big")
            data = b""
            while len(data) < length:
                data += s.recv(length - len(data))
            return data
        s.send(wire)
        return s.recv(65535)


@pytest.mark.asyncio
@pytest.mark.parametrize("tcp", [False, True])
async def test_replies_are_replayed_byte_for_byte(test_config: Config, tcp: bool) -> None:
    running = await start_daemon(test_config)
    try:
        where = running.v4
        for name, rdtype, kw in QUERIES:
            q = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
            first = await asyncio.to_thread(raw, where, q.to_wire(), tcp)
            hits = running.daemon.stats.cache_hits
            q.id = (q.id + 1) & 0xFFFF
            second = await asyncio.to_thread(raw, where, q.to_wire(), tcp)
            assert running.daemon.stats.cache_hits == hits + 1, name
            assert second[2:] == first[2:], name
            assert second[:2] == q.id.to_bytes(2, "big")
    finally:
        await running.daemon.stop()
    assert running.daemon.stats.internal_errors == 0


@pytest.mark.asyncio
async def test_udp_and_tcp_never_share_entries(test_config: Config) -> None:
    running = await start_daemon(test_config)
    try:
        q = dns.message.make_query("big.example.test.", "TXT", use_edns=False)
        udp = dns.message.from_wire(await asyncio.to_thread(raw, running.v4, q.to_wire(), tcp=False))
        tcp = dns.message.from_wire(await asyncio.to_thread(raw, running.v4, q.to_wire(), tcp=True))
        assert udp.flags & dns.flags.TC and not tcp.flags & dns.flags.TC
        assert len(tcp.answer[0]) == 6
    finally:
        await running.daemon.stop()


POOLS = """\
server: {dns_listen: ["127.0.0.1:0", "[::1]:0"], http_listen: "127.0.0.1:0", state_dir: state}
datacenters: {par: {}, ams: {}}
pools:
  wt:
    policy: weighted
    members: [{address: 192.0.2.1, dc: par, weight: 3}, {address: 192.0.2.2, dc: ams, weight: 1}]
  fo:
    datacenters: [par, ams]
    members: [{address: 192.0.2.11, dc: par}, {address: 192.0.2.12, dc: ams}]
  geo:
    policy: geo
    datacenters: [par, ams]
    members: [{address: 192.0.2.21, dc: par}, {address: 192.0.2.22, dc: ams}]
topology:
  - {match: 127.0.5.0/24, prefer: [ams]}
"""


@pytest_asyncio.fixture
async def pools(tmp_path: Path) -> AsyncIterator[Running]:
    write_zone(
        tmp_path, "  wt: {type: A, pool: wt}\n  fo: {type: A, pool: fo}\n  geo: {type: A, pool: geo}\n"
    )
    (tmp_path / "geodns.yaml").write_text(POOLS)
    running = await start_daemon(load(tmp_path / "geodns.yaml"))
    try:
        yield running
    finally:
        await running.daemon.stop()


def first_address(where: Endpoint, name: str, source: str | None = None, qid: int = 7) -> str:
    q = dns.message.make_query(name, "A")
    q.id = qid
    msg = dns.query.udp(q, where.host, port=where.port, timeout=3, source=source)
    return str(msg.answer[0][0])


@pytest.mark.asyncio
async def test_weighted_answers_stay_random_and_weighted(pools: Running) -> None:
    counts: collections.Counter[str] = collections.Counter()
    for i in range(800):
        counts[await asyncio.to_thread(first_address, pools.v4, "wt.example.test.", qid=i)] += 1
    assert set(counts) == {"192.0.2.1", "192.0.2.2"}
    # 3:1 by weight, and no luck involved: the cached variants are stratified over the weights.
    assert 2.8 < counts["192.0.2.1"] / counts["192.0.2.2"] < 3.2
    assert pools.daemon.stats.cache_hits >= 790


@pytest.mark.asyncio
async def test_a_state_change_reaches_the_very_next_query(pools: Running) -> None:
    assert await asyncio.to_thread(first_address, pools.v4, "fo.example.test.") == "192.0.2.11"
    assert await asyncio.to_thread(first_address, pools.v4, "fo.example.test.") == "192.0.2.11"  # cached
    pools.daemon.add_override("dc=par", "down", "test", None)
    assert await asyncio.to_thread(first_address, pools.v4, "fo.example.test.") == "192.0.2.12"
    pools.daemon.remove_override("dc=par")
    assert await asyncio.to_thread(first_address, pools.v4, "fo.example.test.") == "192.0.2.11"


@pytest.mark.asyncio
async def test_geo_answers_are_cached_per_client_rule(pools: Running) -> None:
    for _ in range(3):
        assert (
            await asyncio.to_thread(first_address, pools.v4, "geo.example.test.", source="127.0.5.9")
            == "192.0.2.22"
        )
        assert (
            await asyncio.to_thread(first_address, pools.v4, "geo.example.test.", source="127.0.6.9")
            == "192.0.2.21"
        )
        assert (
            await asyncio.to_thread(first_address, pools.v4, "geo.example.test.", source="127.0.5.200")
            == "192.0.2.22"
        )
    assert pools.daemon.stats.cache_hits >= 6


def test_the_cache_is_bounded(test_config: Config) -> None:
    state = serving_state(test_config, HealthSnapshot(1))
    bounded = type(state)(
        state.zones, state.pools, state.nsid, state.edns_udp_size, AnswerCache(max_entries=5)
    )
    stats = Stats()
    for i in range(50):
        wire = dns.message.make_query(f"n{i}.wild.example.test.", "A").to_wire()
        assert answer(wire, "127.0.0.1", True, bounded, stats) is not None
    assert len(bounded.cache.udp) <= 5


def test_daemon_type(test_config: Config) -> None:
    assert Daemon(test_config).state.cache.udp == {}
