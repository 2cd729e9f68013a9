"""Response rate limiting (server.rate_limit): the pure limiter on a clock of its
own, the classification against real replies, and real UDP floods from many
127.x sources against a running daemon (a forged flood cannot be made on
loopback without raw sockets; binding client sockets to 127.0.x.y can)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import time
from pathlib import Path

import aiohttp
import dns.flags
import dns.message
import dns.rcode
import pytest

from geodns.config import Config, load
from geodns.config.model import RateLimit
from geodns.dns.handler import Stats, handle
from geodns.dns.ratelimit import (
    ANY,
    ERROR,
    NODATA,
    NXDOMAIN,
    POSITIVE,
    REFERRAL,
    WILDCARD,
    RateLimiter,
    classify,
    network_key,
    network_text,
)
from geodns.serving import serving_state
from tests import dnsclient
from tests.configs import write_zone
from tests.conftest import copy_test_config, start_daemon
from tests.daemonproc import spawn
from tests.dnsclient import Endpoint

DATA = Path(__file__).parent / "data"
WIRE = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04mail\x07example\x04test\x00\x00\x01\x00\x01"
REPLY = b"\x12\x34\x85\x00" + WIRE[4:]
_CONFIG: Config = load(DATA / "geodns.yaml")
_ZONES = _CONFIG.zones


def _limiter(rate: int = 10, slip: int = 2, **kw: object) -> tuple[RateLimiter, Stats]:
    stats = Stats()
    settings = RateLimit(responses_per_second=rate, slip=slip, exempt=(), **kw)  # type: ignore[arg-type]
    return RateLimiter(settings, stats), stats


def _send(limiter: RateLimiter, host: str, count: int, now: float) -> tuple[int, int]:
    """(answered in full, sent truncated) out of `count` replies to `host` at `now`."""
    full = tc = 0
    for _ in range(count):
        out = limiter.allow(host, WIRE, REPLY, now, _ZONES)
        if out == REPLY:
            full += 1
        elif out is not None:
            assert out[2] & 0x02 and out[6:12] == bytes(6)  # TC, no records
            tc += 1
    return full, tc


# The limiter itself, on a clock of its own.


def test_a_burst_gets_its_allowance_then_the_rate() -> None:
    limiter, stats = _limiter(rate=10)
    # A quiet network's first second's worth passes uncounted (the cheap path), then
    # its buckets hold one second's worth: at most twice the rate at the onset.
    assert _send(limiter, "192.0.2.1", 100, 100.0) == (20, 40)  # 80 limited: every 2nd slips
    assert stats.rate_limited == 80 and stats.rate_slipped == 40
    assert _send(limiter, "192.0.2.1", 100, 100.5)[0] == 5  # half a second refills 5
    # While the flood goes on, every response is counted: exactly the rate.
    for second in range(1, 6):
        assert _send(limiter, "192.0.2.1", 100, 100.5 + second)[0] == 10


def test_slip_one_truncates_every_limited_reply_and_zero_drops_them() -> None:
    every, _ = _limiter(rate=5, slip=1)
    assert _send(every, "192.0.2.1", 50, 1.0) == (10, 40)
    never, stats = _limiter(rate=5, slip=0)
    assert _send(never, "192.0.2.1", 50, 1.0) == (10, 0)
    assert stats.rate_limited == 40 and stats.rate_slipped == 0


def test_a_network_at_the_rate_is_never_limited() -> None:
    limiter, stats = _limiter(rate=50)
    for second in range(10):
        for i in range(50):
            assert _send(limiter, f"192.0.2.{i}", 1, 10.0 + second + i / 50)[0] == 1
    assert stats.rate_limited == 0


def test_networks_are_counted_by_prefix() -> None:
    limiter, _ = _limiter(rate=10)
    assert _send(limiter, "192.0.2.1", 20, 1.0)[0] == 20
    assert _send(limiter, "192.0.2.200", 10, 1.0)[0] == 0  # the same /24: its allowance is spent
    assert _send(limiter, "192.0.3.1", 20, 1.0)[0] == 20  # another /24
    assert _send(limiter, "2001:db8:0:1::1", 20, 1.0)[0] == 20
    assert _send(limiter, "2001:db8:0:ff::2", 10, 1.0)[0] == 0  # the same /56
    assert _send(limiter, "2001:db8:0:100::1", 20, 1.0)[0] == 20
    wide, _ = _limiter(rate=10, ipv4_prefix=16)
    assert _send(wide, "10.1.2.3", 20, 1.0)[0] == 20
    assert _send(wide, "10.1.200.3", 10, 1.0)[0] == 0


def test_exempt_networks_and_loopback_by_default() -> None:
    stats = Stats()
    exempt = (ipaddress.ip_network("198.51.100.0/24"),)
    limiter = RateLimiter(RateLimit(responses_per_second=5, exempt=exempt), stats)
    assert _send(limiter, "198.51.100.9", 100, 1.0)[0] == 100
    assert _send(limiter, "198.51.101.9", 100, 1.0)[0] == 10
    default = RateLimiter(RateLimit(responses_per_second=5), Stats())
    assert _send(default, "127.0.0.1", 100, 1.0)[0] == 100  # loopback cannot be forged from outside
    assert _send(default, "::1", 100, 1.0)[0] == 100
    assert _send(default, "192.0.2.1", 100, 1.0)[0] == 10


def test_the_table_stays_bounded_whatever_the_number_of_sources() -> None:
    limiter, _ = _limiter(rate=1, table_size=1000)
    rng = random.Random(7)
    for i in range(20_000):
        host = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        limiter.allow(host, WIRE, REPLY, 1.0 + i / 20_000, _ZONES)
        limiter.allow(host, WIRE, REPLY, 1.0 + i / 20_000, _ZONES)  # over the rate: a bucket each
    assert len(limiter._nets) <= 1000 and len(limiter._hosts) <= 1000 and len(limiter._buckets) <= 1000


def test_network_text() -> None:
    assert network_text(network_key("192.0.2.77", 24, 56) or (0, 0), 24, 56) == "192.0.2.0/24"
    assert network_text(network_key("2001:db8:0:1ff::1", 24, 56) or (0, 0), 24, 56) == "2001:db8:0:100::/56"
    assert network_key("not an address", 24, 56) is None


# What a reply is counted as, from real replies of the full path.


def _classified(name: str, qtype: str = "A") -> tuple[int, tuple[str, ...], int]:
    query = dns.message.make_query(name, qtype).to_wire()
    reply = handle(query, "192.0.2.1", True, serving_state(_CONFIG), Stats())
    assert reply is not None
    ident = classify(query, reply, _ZONES)
    return ident.cls, ident.name, ident.qtype


def test_classes_and_names_as_nsd_and_bind_count_them() -> None:
    assert _classified("mail.example.test.") == (POSITIVE, ("mail", "example", "test"), 1)
    assert _classified("MAIL.example.test.", "AAAA") == (NODATA, ("mail", "example", "test"), 0)
    # Random names share one bucket per zone: a random-subdomain flood is one stream.
    assert (
        _classified("a1b2.example.test.")
        == _classified("zz9.x.example.test.")
        == (
            NXDOMAIN,
            ("example", "test"),
            0,
        )
    )
    assert _classified("host.sub.example.test.") == (REFERRAL, ("sub", "example", "test"), 0)
    assert (
        _classified("one.wild.example.test.")
        == _classified("two.wild.example.test.")
        == (
            WILDCARD,
            ("*", "wild", "example", "test"),
            0,
        )
    )
    assert _classified("exists.wild.example.test.", "TXT")[0] == POSITIVE  # not synthesized
    assert _classified("example.test.", "ANY")[0] == ANY
    assert _classified("www.not-ours.example.")[0] == ERROR  # REFUSED


# Real floods against a running daemon.


def _with_rate_limit(tmp_path: Path, lines: str) -> Config:
    path = copy_test_config(tmp_path)
    text = path.read_text().replace("  workers: 1", "  workers: 1\n  rate_limit:\n" + lines, 1)
    path.write_text(text)
    return load(path)


def _flood(where: Endpoint, sources: list[str], name: str, count: int) -> tuple[int, int, float]:
    """`count` queries for `name`, round-robin from sockets bound to `sources`, sent
    as fast as the socket takes them; (answered in full, truncated, seconds spent)."""
    socks = []
    for source in sources:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((source, 0))
        socks.append(sock)
    try:
        began = time.monotonic()
        for i in range(count):
            query = dns.message.make_query(name.replace("{i}", str(i)), "A")
            socks[i % len(socks)].sendto(query.to_wire(), (where.host, where.port))
        spent = time.monotonic() - began
        full = tc = 0
        deadline = time.monotonic() + 1.0
        for sock in socks:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            while True:
                try:
                    reply = dns.message.from_wire(sock.recv(65535))
                except TimeoutError:
                    break
                if reply.flags & dns.flags.TC:
                    assert not reply.answer and len(reply.question) == 1
                    tc += 1
                else:
                    full += 1
        return full, tc, spent
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.asyncio
async def test_a_flood_from_one_network_is_limited_and_others_are_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _with_rate_limit(tmp_path, "    responses_per_second: 20\n    slip: 2\n    exempt: []\n")
    running = await start_daemon(config)
    try:
        v4 = running.v4
        attackers = [f"127.0.7.{i}" for i in range(1, 9)]
        with caplog.at_level(logging.WARNING, logger="geodns.dns.ratelimit"):
            full, tc, spent = await asyncio.to_thread(_flood, v4, attackers, "mail.example.test.", 300)
        # At most two seconds' worth at the onset, then the rate while the flood lasted.
        assert 20 <= full <= 40 + 20 * spent + 2, (full, spent)
        assert tc == (300 - full) // 2  # slip 2: every other limited reply, truncated
        stats = running.daemon.stats
        assert stats.rate_limited == 300 - full and stats.rate_slipped == tc
        assert "rate limiting UDP responses to 127.0.7.0/24: positive for mail.example.test." in caplog.text

        # Another network is not touched; nor is TCP from the limited one.
        full_b, tc_b, _ = await asyncio.to_thread(_flood, v4, ["127.0.8.1"], "mail.example.test.", 15)
        assert (full_b, tc_b) == (15, 0)
        reply = await dnsclient.ask(v4, "mail.example.test.", tcp=True)
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer

        # Random names share the zone's NXDOMAIN bucket; a name of their own is apart.
        hot = ["127.0.9.1", "127.0.9.2"]
        full_n, _, spent_n = await asyncio.to_thread(_flood, v4, hot, "r{i}.example.test.", 200)
        assert 20 <= full_n <= 40 + 20 * spent_n + 2, (full_n, spent_n)
        full_m, _, _ = await asyncio.to_thread(_flood, v4, hot, "mail.example.test.", 10)
        assert full_m == 10

        assert running.daemon.admin is not None
        url = f"http://{running.http.host}:{running.http.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
        assert f"geodns_dns_rate_limited_total {float(stats.rate_limited)}" in text
        assert f"geodns_dns_rate_slipped_total {float(stats.rate_slipped)}" in text
    finally:
        await running.daemon.stop()


@pytest.mark.asyncio
async def test_exempt_networks_and_a_reload_that_turns_it_off(tmp_path: Path) -> None:
    config = _with_rate_limit(tmp_path, "    responses_per_second: 10\n    exempt: [127.0.10.0/24]\n")
    running = await start_daemon(config)
    try:
        full, tc, _ = await asyncio.to_thread(_flood, running.v4, ["127.0.10.5"], "mail.example.test.", 100)
        assert (full, tc) == (100, 0)
        full, _, _ = await asyncio.to_thread(_flood, running.v4, ["127.0.11.5"], "mail.example.test.", 100)
        assert full < 100
        path = config.source
        path.write_text(
            path.read_text()
            .replace("    responses_per_second: 10\n", "", 1)
            .replace("  rate_limit:\n", "  rate_limit: false\n", 1)
            .replace("    exempt: [127.0.10.0/24]\n", "", 1)
        )
        assert await running.daemon.reload()
        full, tc, _ = await asyncio.to_thread(_flood, running.v4, ["127.0.12.5"], "mail.example.test.", 100)
        assert (full, tc) == (100, 0)
    finally:
        await running.daemon.stop()


@pytest.mark.asyncio
async def test_dns_workers_share_the_rate(tmp_path: Path) -> None:
    """Each worker allows its share: a flood spread over both workers' sockets (the
    kernel hashes source ports) gets the configured rate in all, not twice it."""
    write_zone(tmp_path, "  static: {type: A, value: 192.0.2.1}\n")
    path = tmp_path / "geodns.yaml"
    path.write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 2,\n'
        "         rate_limit: {responses_per_second: 40, exempt: []}}\n"
    )
    proc = await spawn(path)
    try:
        sources = [f"127.0.13.{i}" for i in range(1, 17)]
        full, tc, spent = await asyncio.to_thread(_flood, proc.dns, sources, "static.example.test.", 400)
        assert 20 <= full <= 80 + 40 * spent + 4, (full, spent)
        assert tc >= (400 - full) // 2 - 2  # slip counts per worker's bucket: off by one at most each
        await proc.wait_for_log("rate limiting UDP responses to 127.0.13.0/24")
        url = f"http://{proc.http.host}:{proc.http.port}/metrics"
        deadline = time.monotonic() + 5
        while True:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                text = await response.text()
            if f"geodns_dns_rate_limited_total {float(400 - full)}" in text or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # workers report twice a second
        assert f"geodns_dns_rate_limited_total {float(400 - full)}" in text
        assert f"geodns_dns_rate_slipped_total {float(tc)}" in text
    finally:
        await proc.kill()
