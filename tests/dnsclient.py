"""Small helpers for talking to a geodns under test with real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass

import dns.asyncquery
import dns.message
import dns.rdatatype

from geodns.dns.fastcache import VARIANTS


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    warm: bool = False  # ask() sends every query twice and returns the second (cached) reply

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


warm_queries = 0  # how many warmed queries ask() sent: the fixture checks they hit the cache


async def ask(
    where: Endpoint,
    qname: str,
    qtype: str = "A",
    *,
    tcp: bool = False,
    edns: int | None = 0,
    payload: int = 1232,
    options: list[dns.edns.Option] | None = None,
    want_dnssec: bool = False,
) -> dns.message.Message:
    """Query with dnspython; with edns=None no OPT is sent."""
    query = dns.message.make_query(
        qname,
        qtype,
        use_edns=edns if edns is not None else False,
        payload=payload,
        options=options,
        want_dnssec=want_dnssec,
    )
    if where.warm:
        global warm_queries  # noqa: PLW0603 - a test-suite counter, read by the server fixture
        warm_queries += 1
        # First the same bytes with other IDs: the reply below then comes from the cache.
        # A random (weighted/all) answer draws one variant per query until it has
        # VARIANTS of them; only then are its replies replayed.
        first = dns.message.from_wire(query.to_wire())
        for i in range(VARIANTS):
            first.id = (query.id + 1 + i) & 0xFFFF
            await _send(first, where, tcp)
    return await _send(query, where, tcp)


async def _send(query: dns.message.Message, where: Endpoint, tcp: bool) -> dns.message.Message:
    if tcp:
        return await dns.asyncquery.tcp(query, where.host, port=where.port, timeout=3)
    return await dns.asyncquery.udp(query, where.host, port=where.port, timeout=3)


async def udp_raw(where: Endpoint, packet: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one datagram, return the reply or None when nothing comes back in `timeout`."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(where.family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (where.host, where.port))
        await loop.sock_sendall(sock, packet)
        try:
            async with asyncio.timeout(timeout):
                return await loop.sock_recv(sock, 65535)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def tcp_open(where: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(where.host, where.port)


async def tcp_read_message(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    async with asyncio.timeout(timeout):
        (length,) = struct.unpack("!H", await reader.readexactly(2))
        return await reader.readexactly(length)


def framed(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message
