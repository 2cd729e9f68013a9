"""Thousands of random and bit-flipped packets: never an exception, and the
server still answers correctly afterwards."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import Config
from geodns.dns.handler import Stats, handle
from geodns.serving import serving_state
from tests.conftest import Running
from tests.dnsclient import ask, framed

SEEDS = [
    dns.message.make_query("www.example.test.", "A").to_wire(),
    dns.message.make_query("alias2.example.test.", "AAAA", use_edns=0, want_dnssec=True).to_wire(),
    dns.message.make_query(
        "big.example.test.", "TXT", use_edns=0, options=[dns.edns.GenericOption(dns.edns.NSID, b"")]
    ).to_wire(),
    dns.message.make_query("x.wild.example.test.", "ANY", use_edns=0).to_wire(),
    dns.message.make_query("sub.example.test.", "NS").to_wire(),
]


def mutate(rng: random.Random, packet: bytes) -> bytes:
    data = bytearray(packet)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.5 and data:
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif choice < 0.7 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.85:
            del data[rng.randrange(len(data) + 1) :]
        else:
            pos = rng.randrange(len(data) + 1)
            data[pos:pos] = rng.randbytes(rng.randint(1, 8))
    return bytes(data)


def check_reply(packet: bytes, reply: bytes | None) -> None:
    if reply is None:
        return
    assert len(reply) >= 12
    assert reply[:2] == packet[:2]  # same ID
    (flags,) = struct.unpack_from("!H", reply, 2)
    assert flags & 0x8000  # a response


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=600))
def test_handler_is_total_on_random_bytes(test_config: Config, data: bytes) -> None:
    stats = Stats()
    for udp in (True, False):
        check_reply(data, handle(data, "127.0.0.1", udp, serving_state(test_config), stats))
    assert stats.internal_errors == 0


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_handler_is_total_on_mutated_queries(test_config: Config, seed: bytes, rng: random.Random) -> None:
    stats = Stats()
    packet = mutate(rng, seed)
    reply = handle(packet, "127.0.0.1", True, serving_state(test_config), stats)
    check_reply(packet, reply)
    if reply is not None and (reply[2] >> 3) & 0xF == 0:
        # Well-formed for a real parser (dnspython reads other opcodes, e.g. UPDATE, by their own rules).
        dns.message.from_wire(reply, ignore_trailing=True)
    assert stats.internal_errors == 0


@pytest.mark.asyncio
async def test_server_survives_a_barrage_and_still_answers(server: Running) -> None:
    rng = random.Random(20261126)
    packets = [mutate(rng, rng.choice(SEEDS)) for _ in range(3000)]
    packets += [rng.randbytes(rng.randint(0, 300)) for _ in range(1000)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for i, packet in enumerate(packets):
            try:
                sock.sendto(packet, (server.v4.host, server.v4.port))
            except BlockingIOError:
                await asyncio.sleep(0.001)
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the server drain
    finally:
        sock.close()
    # Garbage over TCP too: random frames on a few connections.
    for _ in range(20):
        _reader, writer = await asyncio.open_connection(server.v4.host, server.v4.port)
        for _ in range(10):
            writer.write(framed(mutate(rng, rng.choice(SEEDS))))
        writer.write(rng.randbytes(rng.randint(1, 40)))
        await writer.drain()
        writer.close()
    await asyncio.sleep(0.2)
    msg = await ask(server.v4, "alias2.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR
    assert {rd.to_text() for rrset in msg.answer[-1:] for rd in rrset} == {"127.0.0.11", "127.0.0.21"}
    msg = await ask(server.v4, "mail.example.test.", "A", tcp=True)
    assert msg.answer[0][0].to_text() == "192.0.2.25"
    assert server.daemon.stats.queries > 3000
    assert server.daemon.stats.internal_errors == 0
