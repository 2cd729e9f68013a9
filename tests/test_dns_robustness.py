"""Malformed and unusual messages: FORMERR, NOTIMP, drops; TCP framing and limits."""

from __future__ import annotations

import asyncio
import dataclasses
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from geodns.config import Config
from tests.conftest import Running, start_daemon
from tests.dnsclient import Endpoint, framed, tcp_open, tcp_read_message, udp_raw


def query_wire(name: str = "mail.example.test.", rdtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kw).to_wire()  # type: ignore[arg-type]


def header(qid: int, flags: int, qd: int, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!6H", qid, flags, qd, an, ns, ar)


QUESTION = b"\x04mail\x07example\x04test\x00\x00\x01\x00\x01"


async def rcode_of(where: Endpoint, packet: bytes) -> int | None:
    reply = await udp_raw(where, packet)
    if reply is None:
        return None
    return dns.message.from_wire(reply).rcode()


@pytest.mark.asyncio
async def test_opcode_other_than_query_gets_notimp(server: Running) -> None:
    for opcode in (dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE):
        packet = header(7, opcode << 11, 1) + QUESTION
        reply = await udp_raw(server.v4, packet)
        assert reply is not None
        # Read the header by hand: dnspython parses UPDATE bodies with UPDATE rules.
        qid, flags = struct.unpack_from("!HH", reply)
        assert qid == 7
        assert flags & 0x8000  # QR
        assert (flags >> 11) & 0xF == opcode
        assert flags & 0xF == dns.rcode.NOTIMP


@pytest.mark.asyncio
async def test_qdcount_not_one_is_formerr(server: Running) -> None:
    assert await rcode_of(server.v4, header(1, 0, 0)) == dns.rcode.FORMERR
    assert await rcode_of(server.v4, header(2, 0, 2) + QUESTION + QUESTION) == dns.rcode.FORMERR


@pytest.mark.asyncio
async def test_responses_and_runts_are_dropped(server: Running) -> None:
    response = header(3, 0x8000, 1) + QUESTION
    assert await udp_raw(server.v4, response, timeout=0.3) is None
    assert await udp_raw(server.v4, b"\x00\x01\x02", timeout=0.3) is None
    # The server is still there.
    assert await rcode_of(server.v4, query_wire()) == dns.rcode.NOERROR


@pytest.mark.asyncio
async def test_unparsable_bodies_get_formerr_with_the_id(server: Running) -> None:
    bad = [
        header(9, 0, 1) + b"\x04mail",  # name cut short
        header(9, 0, 1) + b"\x04mail\x07example\x04test\x00\x00",  # type/class cut short
        header(9, 0, 1) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",  # 64-byte label
        header(9, 0, 1) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer loop in the question
        header(9, 0, 1) + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",  # name > 255
        header(9, 0, 1, ar=1) + QUESTION,  # additional record missing
        header(9, 0, 1) + QUESTION + b"trailing",
        header(9, 0, 1, ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x08\x00\x03",
    ]
    for packet in bad:
        reply = await udp_raw(server.v4, packet)
        assert reply is not None, packet
        msg = dns.message.from_wire(reply)
        assert (msg.id, msg.rcode()) == (9, dns.rcode.FORMERR), packet


@pytest.mark.asyncio
async def test_two_opt_records_are_formerr(server: Running) -> None:
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
    packet = header(5, 0x0100, 1, ar=2) + QUESTION + opt + opt
    assert await rcode_of(server.v4, packet) == dns.rcode.FORMERR


@pytest.mark.asyncio
async def test_answer_section_in_a_query_is_formerr(server: Running) -> None:
    rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\x01\x02\x03\x04"
    assert await rcode_of(server.v4, header(6, 0, 1, an=1) + QUESTION + rr) == dns.rcode.FORMERR


@pytest.mark.asyncio
async def test_tcp_pipelining_and_split_length_prefix(server: Running) -> None:
    reader, writer = await tcp_open(server.v4)
    try:
        names = ["mail.example.test.", "ns1.example.test.", "nope.example.test."]
        queries = [dns.message.make_query(n, "A") for n in names]
        # Three queries in one write: answered in order on the same connection.
        writer.write(b"".join(framed(q.to_wire()) for q in queries))
        await writer.drain()
        for q in queries:
            msg = dns.message.from_wire(await tcp_read_message(reader))
            assert msg.id == q.id
        # A length prefix split across two segments, then the body in pieces.
        q = dns.message.make_query("mail.example.test.", "A")
        data = framed(q.to_wire())
        for piece in (data[:1], data[1:2], data[2:10], data[10:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)
        msg = dns.message.from_wire(await tcp_read_message(reader))
        assert msg.id == q.id and msg.rcode() == dns.rcode.NOERROR
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_tcp_malformed_message_gets_formerr_and_connection_survives(server: Running) -> None:
    reader, writer = await tcp_open(server.v4)
    try:
        writer.write(framed(header(11, 0, 1) + b"\x04mail"))
        ok = dns.message.make_query("mail.example.test.", "A")
        writer.write(framed(ok.to_wire()))
        await writer.drain()
        first = dns.message.from_wire(await tcp_read_message(reader))
        assert (first.id, first.rcode()) == (11, dns.rcode.FORMERR)
        second = dns.message.from_wire(await tcp_read_message(reader))
        assert second.id == ok.id and second.rcode() == dns.rcode.NOERROR
    finally:
        writer.close()


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        async with asyncio.timeout(within):
            return await reader.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.asyncio
async def test_tcp_idle_timeout_and_connection_cap(test_config: Config) -> None:
    server_cfg = dataclasses.replace(test_config.server, tcp_idle_timeout=0.3, tcp_max_connections=2)
    running = await start_daemon(dataclasses.replace(test_config, server=server_cfg))
    try:
        idle_reader, idle_writer = await tcp_open(running.v4)
        assert await _closed_by_server(idle_reader, within=3.0)
        idle_writer.close()
        assert running.daemon.stats.tcp_closed_idle == 1
    finally:
        await running.daemon.stop()
    server_cfg = dataclasses.replace(test_config.server, tcp_idle_timeout=5.0, tcp_max_connections=2)
    running = await start_daemon(dataclasses.replace(test_config, server=server_cfg))
    try:
        held = [await tcp_open(running.v4) for _ in range(2)]
        await asyncio.sleep(0.05)
        # Over the cap: the connection idle longest makes room for the new one.
        new_reader, new_writer = await tcp_open(running.v4)
        assert await _closed_by_server(held[0][0], within=1.0)
        q = dns.message.make_query("mail.example.test.", "A")
        new_writer.write(framed(q.to_wire()))
        assert dns.message.from_wire(await tcp_read_message(new_reader)).id == q.id
        # The other held connection still works.
        held[1][1].write(framed(q.to_wire()))
        assert dns.message.from_wire(await tcp_read_message(held[1][0])).id == q.id
        assert running.daemon.stats.tcp_closed_evicted == 1
        for _, w in [*held, (new_reader, new_writer)]:
            w.close()
    finally:
        await running.daemon.stop()
