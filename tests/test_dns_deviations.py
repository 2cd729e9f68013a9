"""Where geodns used to answer differently from Knot, NSD and the RFCs: each case
with the reference behaviour, full path and replayed from the cache alike."""

from __future__ import annotations

import asyncio
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import pytest

from tests.conftest import Running
from tests.dnsclient import ask, framed, tcp_open, udp_raw


@pytest.mark.asyncio
async def test_any_at_a_cname_owner_is_the_cname_alone(server: Running) -> None:
    """RFC 1034 3.6.2: ANY at an alias answers the CNAME, not its target's data;
    a dangling one is not NXDOMAIN."""
    for name, target in (
        ("alias.example.test.", "www.example.test."),
        ("dangling.example.test.", "missing.example.test."),
    ):
        msg = await ask(server.v4, name, "ANY")
        assert msg.rcode() == dns.rcode.NOERROR
        assert [(r.rdtype, r[0].target.to_text()) for r in msg.answer] == [(dns.rdatatype.CNAME, target)]


@pytest.mark.asyncio
async def test_a_cname_into_a_delegation_carries_the_referral(server: Running) -> None:
    msg = await ask(server.v4, "into-sub.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert [(r.name.to_text(), r.rdtype) for r in msg.answer] == [
        ("into-sub.example.test.", dns.rdatatype.CNAME)
    ]
    ns = [r for r in msg.authority if r.rdtype == dns.rdatatype.NS]
    assert ns and ns[0].name.to_text() == "sub.example.test."
    glue = {r.name.to_text() for r in msg.additional if r.rdtype == dns.rdatatype.A}
    assert "ns.sub.example.test." in glue


@pytest.mark.asyncio
async def test_ixfr_with_the_clients_soa_is_refused_like_axfr(server: Running) -> None:
    q = dns.message.make_query("example.test.", "IXFR")
    q.authority.append(dns.rrset.from_text("example.test.", 0, "IN", "SOA", ". . 1 1 1 1 1"))
    reply = await udp_raw(server.v4, q.to_wire())
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.REFUSED


@pytest.mark.asyncio
async def test_formerr_to_an_edns_query_carries_an_opt(server: Running) -> None:
    """RFC 6891 7: a FORMERR answers an OPT that could be read with an OPT."""
    wire = dns.message.make_query("www.example.test.", "A", use_edns=0).to_wire() + b"\x00trailing"
    reply = await udp_raw(server.v4, wire)
    assert reply is not None
    header_counts = struct.unpack("!HHHH", reply[4:12])
    assert (reply[3] & 0x0F) == dns.rcode.FORMERR and header_counts[3] == 1  # ARCOUNT: the OPT
    assert reply[-11:-8] == b"\x00\x00\x29"  # root name, type OPT


@pytest.mark.asyncio
async def test_a_tcp_frame_shorter_than_a_header_closes_the_connection(server: Running) -> None:
    reader, writer = await tcp_open(server.v4)
    try:
        writer.write(framed(b"\x01\x02\x03"))
        await writer.drain()
        async with asyncio.timeout(1.0):  # not the 2 s idle timeout of the test config
            assert await reader.read() == b""
    finally:
        writer.close()


@pytest.mark.asyncio
async def test_an_asterisk_that_is_not_leftmost_is_a_plain_label(server: Running) -> None:
    msg = await ask(server.v4, "host.*.literal.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and [r[0].to_text() for r in msg.answer] == ["192.0.2.77"]
    # ... and not a wildcard: other names under it do not exist.
    msg = await ask(server.v4, "host.x.literal.example.test.", "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN


@pytest.mark.asyncio
@pytest.mark.parametrize("edns", [False, True])
async def test_a_tsig_signed_query_gets_notauth_and_badkey(server: Running, edns: bool) -> None:
    """RFC 8945 5.2: we hold no keys, so a signed query is answered NOTAUTH with an
    unsigned TSIG saying BADKEY, never with data; dnspython, verifying the reply as
    a signing client does, sees the peer's BADKEY."""
    keyring = dns.tsig.Key("transfer-key.", "c2VjcmV0c2VjcmV0c2VjcmV0", "hmac-sha256")
    q = dns.message.make_query("www.example.test.", "A", use_edns=0 if edns else False)
    q.use_tsig(keyring)
    reply = await udp_raw(server.v4, q.to_wire())
    assert reply is not None
    assert reply[3] & 0x0F == 9 and not struct.unpack("!H", reply[6:8])[0]  # NOTAUTH, no answers
    assert reply.endswith(b"\x00\x11\x00\x00")  # error BADKEY, no other data
    with pytest.raises(dns.tsig.PeerBadKey):
        dns.message.from_wire(reply, keyring=keyring, request_mac=q.mac)
