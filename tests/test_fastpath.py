"""The answer cache: replays exactly what the full path said, keeps weighted
answers random and geo answers per client (what a health change drops:
test_invalidation.py)."""

from __future__ import annotations

import asyncio
import collections
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import pytest_asyncio

from geodns.config import Config, load
from geodns.daemon import Daemon
from geodns.dns import fastcache, fastpath
from geodns.dns.fastcache import ENTRY_OVERHEAD, VARIANTS, AnswerCache, payload
from geodns.dns.fastpath import answer
from geodns.dns.handler import ServingState, Stats, handle
from geodns.dns.wire import udp_limit
from geodns.health.snapshot import HealthSnapshot
from geodns.serving import serving_state
from tests.configs import POOL_RECORDS, POOLS, write_zone
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


@pytest_asyncio.fixture
async def pools(tmp_path: Path) -> AsyncIterator[Running]:
    write_zone(tmp_path, POOL_RECORDS)
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
    # The variants are drawn one per query (no query pays for 16 resolutions), then replayed.
    assert pools.daemon.stats.cache_hits >= 800 - VARIANTS - 2


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


def test_the_cache_is_bounded_in_bytes_and_keeps_what_is_used(test_config: Config) -> None:
    state = serving_state(test_config, HealthSnapshot(1))
    budget = 4000
    bounded = type(state)(state.zones, state.pools, state.nsid, state.edns_udp_size, AnswerCache(budget))
    stats = Stats()
    hot = dns.message.make_query("mail.example.test.", "A").to_wire()
    for i in range(200):
        wire = dns.message.make_query(f"n{i}.wild.example.test.", "A").to_wire()
        assert answer(wire, "127.0.0.1", True, bounded, stats) is not None
        assert answer(hot, "127.0.0.1", True, bounded, stats) is not None
        assert bounded.cache.used <= budget
    cache = bounded.cache
    assert cache.evictions > 150 and 0 < cache.entries() < 20
    # Least recently used goes first: the name asked after every flood query stays.
    assert hot[2:] in cache.udp and stats.cache_hits >= 199
    # The accounting matches what is held.
    assert cache.used == sum(len(k) + ENTRY_OVERHEAD + payload(v) for k, v in cache.udp.items())


def test_daemon_type(test_config: Config) -> None:
    assert Daemon(test_config).state.cache.udp == {}


def _fresh(config: Config) -> ServingState:
    return serving_state(config, HealthSnapshot(1))


def _recase(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


# Deterministic answers of every shape: data, CNAME chains, NXDOMAIN, NODATA,
# wildcards, referrals, a truncated TXT, refused.
FOLD_CASES = [
    ("mail.example.test.", "A"),
    ("alias2.example.test.", "MX"),
    ("nope.example.test.", "A"),
    ("mail.example.test.", "AAAA"),
    ("x.wild.example.test.", "A"),
    ("deep.sub.example.test.", "A"),
    ("big.example.test.", "TXT"),
    ("longtxt.example.test.", "TXT"),
    ("example.org.", "A"),
    ("example.test.", "MX"),
]


def test_mixed_case_and_edns_sizes_replay_what_the_full_path_says(test_config: Config) -> None:
    """0x20 resolvers and random EDNS sizes: every query, whatever its spelling and
    size, gets from the cache byte for byte what a fresh full path answers it, and
    the cache holds a handful of entries per name, not one per variation."""
    rng = random.Random(20)
    cached = _fresh(test_config)
    stats = Stats()
    for name, rdtype in FOLD_CASES:
        for i in range(40):
            size = rng.choice([None, 512, 700, 1232, 1400, 4096, rng.randrange(0, 65536)])
            q = dns.message.make_query(
                _recase(name, rng), rdtype, use_edns=0 if size is not None else False, payload=size or 512
            )
            q.id = i
            wire = q.to_wire()
            full = handle(wire, "127.0.0.1", True, _fresh(test_config), Stats())
            assert answer(wire, "127.0.0.1", True, cached, stats) == full, (name, rdtype, size)
    assert stats.internal_errors == 0
    # Sizes at or above ours, and all sizes for replies under 512 bytes, share entries;
    # raw-byte aliases add one per distinct lowercase query.
    assert stats.cache_hits > 0.6 * 40 * len(FOLD_CASES)
    assert cached.cache.entries() < 8 * len(FOLD_CASES)


def test_folded_hits_splice_the_clients_own_spelling(test_config: Config) -> None:
    state = _fresh(test_config)
    stats = Stats()
    for spelling in ("mail.example.test.", "MAIL.EXAMPLE.TEST.", "mAiL.ExAmPlE.tEsT."):
        reply = answer(dns.message.make_query(spelling, "A").to_wire(), "127.0.0.1", True, state, stats)
        assert reply is not None
        msg = dns.message.from_wire(reply)
        assert msg.question[0].name.to_text() == spelling  # dnspython keeps the case it read
        assert [str(rr) for rr in msg.answer[0]] == ["192.0.2.25"]
    assert stats.cache_hits == 2


def test_a_new_spelling_of_a_known_query_costs_one_lookup(
    test_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resolvers doing 0x20 send every query in a new spelling: once the query has
    been answered in any spelling, the next one is found under its lowered bytes
    and gets its own spelling back, without folding the query again."""
    state = _fresh(test_config)
    stats = Stats()
    rng = random.Random(3)
    for spelling in ("MAIL.example.test.", "mail.EXAMPLE.test."):  # a miss, then a folded hit
        assert answer(dns.message.make_query(spelling, "A", use_edns=0).to_wire(), "::1", True, state, stats)
    folds = 0
    real = fastcache.fold

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal folds
        folds += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(fastpath, "fold", counting)
    for _ in range(20):
        spelling = _recase("mail.example.test.", rng)
        reply = answer(dns.message.make_query(spelling, "A", use_edns=0).to_wire(), "::1", True, state, stats)
        assert reply is not None
        msg = dns.message.from_wire(reply)
        assert msg.question[0].name.to_text() == spelling
        assert [str(rr) for rr in msg.answer[0]] == ["192.0.2.25"]
    assert folds == 0
    assert stats.cache_hits >= 21


def test_a_random_answer_costs_one_resolution_per_query(
    test_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weighted/all answers used to draw 16 variants on the first miss (17 full
    resolutions in one query); now each query pays for at most one."""
    calls = 0
    real = handle

    def counting(*args: Any, **kwargs: Any) -> bytes | None:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(fastpath, "handle", counting)
    state = _fresh(test_config)  # www is an `all` pool: a random order each time
    stats = Stats()
    wire = dns.message.make_query("www.example.test.", "A").to_wire()
    for i in range(VARIANTS + 10):
        before = calls
        assert answer(wire, "127.0.0.1", True, state, stats) is not None
        assert calls - before == (1 if i < VARIANTS else 0), i
    # A new ECS subnet per query (no topology: the answer does not depend on it) is
    # at most one resolution each, never 17, and none once the variants are drawn:
    # the subnets share one entry.
    before_all = calls
    for i in range(50):
        ecs = dns.edns.ECSOption(f"198.{i}.{i}.0", 24)
        q = dns.message.make_query("www.example.test.", "A", use_edns=0, options=[ecs])
        before = calls
        assert answer(q.to_wire(), "127.0.0.1", True, state, stats) is not None
        assert calls - before <= 1
    assert calls - before_all == VARIANTS


@pytest.mark.parametrize(
    ("requested", "limit"),
    [
        (0, 512),
        (511, 512),
        (512, 512),
        (639, 512),
        (640, 640),
        (700, 640),
        (1231, 1152),
        (1232, 1232),
        (4096, 1232),
    ],
)
def test_udp_limits_come_in_classes(requested: int, limit: int) -> None:
    assert udp_limit(requested, 1232) == limit


def test_random_edns_sizes_make_a_handful_of_entries_for_a_big_answer(test_config: Config) -> None:
    """A 600-byte TXT asked with every EDNS size from 512 to 1400: at most one entry per
    size class, and every reply within the client's own size."""
    state = _fresh(test_config)
    stats = Stats()
    for size in range(512, 1401, 7):
        q = dns.message.make_query("big.example.test.", "TXT", use_edns=0, payload=size)
        reply = answer(q.to_wire(), "127.0.0.1", True, state, stats)
        assert reply is not None and len(reply) <= size
    assert state.cache.entries() <= 8 and stats.cache_hits > 100


def _ecs_query(name: str, subnet: str, prefix: int, qid: int) -> bytes:
    q = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(subnet, prefix)])
    q.id = qid
    return q.to_wire()


def test_a_new_subnet_per_query_shares_one_entry_when_the_answer_ignores_it(test_config: Config) -> None:
    """A random ECS /24 per query to names whose answer does not depend on the
    subnet: one entry, and every reply byte for byte the full path's (the client's
    own subnet echoed, scope 0)."""
    rng = random.Random(7)
    state = _fresh(test_config)
    stats = Stats()
    for i in range(300):
        subnet = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        wire = _ecs_query("mail.example.test.", subnet, 24, i)
        full = handle(wire, "127.0.0.1", True, _fresh(test_config), Stats())
        assert answer(wire, "127.0.0.1", True, state, stats) == full
    assert stats.cache_hits == 299 and state.cache.entries() == 1


@pytest.mark.asyncio
async def test_geo_answers_never_cross_subnets(pools: Running) -> None:
    """The geo pool's answer depends on the subnet: it is never replayed to another."""
    state = pools.daemon.state
    stats = Stats()
    for i in range(40):
        subnet, expected = ("127.0.5.0", "192.0.2.22") if i % 2 else ("127.0.6.0", "192.0.2.21")
        reply = answer(_ecs_query("geo.example.test.", subnet, 24, i), "127.0.0.1", True, state, stats)
        assert reply is not None
        assert str(dns.message.from_wire(reply).answer[0][0]) == expected, (i, subnet)


def test_a_malformed_subnet_is_never_answered_from_the_cache(test_config: Config) -> None:
    state = _fresh(test_config)
    stats = Stats()
    assert answer(_ecs_query("mail.example.test.", "198.51.100.0", 24, 1), "127.0.0.1", True, state, stats)
    bad = bytearray(_ecs_query("mail.example.test.", "198.51.100.0", 23, 2))
    bad[-1] |= 0x01  # a bit set beyond the 23-bit source prefix (RFC 7871 6: FORMERR)
    reply = answer(bytes(bad), "127.0.0.1", True, state, stats)
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
