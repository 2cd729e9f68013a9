"""Every resolver-facing behaviour, over real UDP and TCP sockets, IPv4 and IPv6."""

from __future__ import annotations

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.conftest import Running
from tests.dnsclient import Endpoint, ask, udp_raw

TRANSPORTS = ["udp4", "tcp4", "udp6", "tcp6"]


def endpoint(server: Running, transport: str) -> tuple[Endpoint, bool]:
    return (server.v6 if transport.endswith("6") else server.v4), transport.startswith("tcp")


def answers(msg: dns.message.Message, rdtype: str) -> set[str]:
    out: set[str] = set()
    for rrset in msg.answer:
        if rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out.update(rd.to_text() for rd in rrset)
    return out


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_authoritative_answer_flags_and_case(server: Running, transport: str) -> None:
    where, tcp = endpoint(server, transport)
    msg = await ask(where, "MaIl.ExAmPlE.TeSt.", "A", tcp=tcp)
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.flags & dns.flags.AA
    assert not msg.flags & dns.flags.RA
    assert msg.flags & dns.flags.RD  # echoed from the query
    assert not msg.flags & dns.flags.AD
    assert msg.question[0].name.to_text() == "MaIl.ExAmPlE.TeSt."  # the client's own case
    assert answers(msg, "A") == {"192.0.2.25"}
    assert msg.answer[0].ttl == 3600


@pytest.mark.asyncio
async def test_rd_clear_stays_clear_and_answers_are_compressed(server: Running) -> None:
    query = dns.message.make_query("www.example.test.", "A", flags=0)
    wire = await udp_raw(server.v4, query.to_wire())
    assert wire is not None
    msg = dns.message.from_wire(wire)
    assert not msg.flags & dns.flags.RD
    # Owner names point back at the question name (offset 12): 0xC00C.
    assert wire.count(b"\xc0\x0c") == len(msg.answer[0])


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_nxdomain_carries_soa_with_negative_ttl(server: Running, transport: str) -> None:
    where, tcp = endpoint(server, transport)
    msg = await ask(where, "nope.example.test.", "A", tcp=tcp)
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.flags & dns.flags.AA
    assert not msg.answer
    soa = msg.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == "example.test."
    assert soa.ttl == 120  # min(SOA TTL 3600, minimum 120), RFC 2308


@pytest.mark.asyncio
async def test_nodata_and_empty_non_terminal(server: Running) -> None:
    for name in ("mail.example.test.", "b.c.example.test.", "c.example.test."):
        msg = await ask(server.v4, name, "AAAA")
        assert msg.rcode() == dns.rcode.NOERROR, name
        assert not msg.answer
        assert msg.authority[0].rdtype == dns.rdatatype.SOA
    # An empty non-terminal exists for every type, including A.
    msg = await ask(server.v4, "b.c.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer


@pytest.mark.asyncio
async def test_negative_ttl_uses_soa_ttl_when_smaller(server: Running) -> None:
    msg = await ask(server.v4, "nope.other.test.", "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.authority[0].ttl == 600  # zone TTL 600 < minimum 900


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_names_outside_our_zones_are_refused(server: Running, transport: str) -> None:
    where, tcp = endpoint(server, transport)
    for name in ("example.org.", "test.", "."):
        msg = await ask(where, name, "A", tcp=tcp)
        assert msg.rcode() == dns.rcode.REFUSED, name
        assert not msg.flags & dns.flags.AA
        assert not msg.answer


@pytest.mark.asyncio
async def test_referral_below_delegation(server: Running) -> None:
    for name in ("sub.example.test.", "host.deep.sub.example.test."):
        msg = await ask(server.v4, name, "A")
        assert msg.rcode() == dns.rcode.NOERROR
        assert not msg.flags & dns.flags.AA  # not authoritative below the cut
        assert not msg.answer
        assert msg.authority[0].rdtype == dns.rdatatype.NS
        assert {rd.to_text() for rd in msg.authority[0]} == {
            "ns.sub.example.test.",
            "ns.elsewhere.example.org.",
        }
        glue = {
            (rrset.name.to_text(), rd.to_text())
            for rrset in msg.additional
            for rd in rrset
            if rrset.rdtype == dns.rdatatype.A
        }
        assert glue == {("ns.sub.example.test.", "192.0.2.99")}


@pytest.mark.asyncio
async def test_ds_at_delegation_is_answered_by_parent(server: Running) -> None:
    msg = await ask(server.v4, "sub.example.test.", "DS")
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert not msg.answer and msg.authority[0].rdtype == dns.rdatatype.SOA


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cname_chain_is_followed(server: Running, transport: str) -> None:
    where, tcp = endpoint(server, transport)
    msg = await ask(where, "alias2.example.test.", "A", tcp=tcp)
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    chain = [(r.name.to_text(), r.rdtype) for r in msg.answer]
    assert chain == [
        ("alias2.example.test.", dns.rdatatype.CNAME),
        ("alias.example.test.", dns.rdatatype.CNAME),
        ("www.example.test.", dns.rdatatype.A),
    ]
    assert answers(msg, "A") == {"127.0.0.11", "127.0.0.21"}


@pytest.mark.asyncio
async def test_cname_edge_cases(server: Running) -> None:
    # A loop ends, with both CNAMEs once each.
    msg = await ask(server.v4, "loop1.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR
    assert [r.name.to_text() for r in msg.answer] == ["loop1.example.test.", "loop2.example.test."]
    # A chain ending in a missing name takes that name's rcode (RFC 6604).
    msg = await ask(server.v4, "dangling.example.test.", "A")
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert msg.answer[0].rdtype == dns.rdatatype.CNAME
    assert msg.authority[0].rdtype == dns.rdatatype.SOA
    # A target outside our zones is left for the resolver.
    msg = await ask(server.v4, "outside.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and len(msg.answer) == 1
    # A target in another served zone is followed into it.
    msg = await ask(server.v4, "to-other-zone.example.test.", "A")
    assert answers(msg, "A") == {"192.0.2.200"}
    # Asking for the CNAME itself returns just it.
    msg = await ask(server.v4, "alias.example.test.", "CNAME")
    assert [r.rdtype for r in msg.answer] == [dns.rdatatype.CNAME]


@pytest.mark.asyncio
async def test_wildcards(server: Running) -> None:
    msg = await ask(server.v4, "anything.wild.example.test.", "A")
    assert msg.answer[0].name.to_text() == "anything.wild.example.test."
    assert answers(msg, "A") == {"192.0.2.80"}
    msg = await ask(server.v4, "x.y.wild.example.test.", "A")
    assert answers(msg, "A") == {"192.0.2.80"}
    # An existing name is not synthesized, and NODATA for its other types.
    msg = await ask(server.v4, "exists.wild.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    # The wildcard's own type set decides: NODATA, not NXDOMAIN, for other types.
    msg = await ask(server.v4, "anything.wild.example.test.", "MX")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    # Wildcard CNAME is synthesized and followed.
    msg = await ask(server.v4, "q.wildcname.example.test.", "A")
    assert msg.answer[0].name.to_text() == "q.wildcname.example.test."
    assert answers(msg, "A") == {"127.0.0.11", "127.0.0.21"}
    # The wildcard's parent itself is a plain empty non-terminal.
    msg = await ask(server.v4, "wild.example.test.", "A")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["udp4", "tcp4"])
async def test_any_is_minimal(server: Running, transport: str) -> None:
    where, tcp = endpoint(server, transport)
    msg = await ask(where, "example.test.", "ANY", tcp=tcp)
    assert msg.rcode() == dns.rcode.NOERROR and msg.flags & dns.flags.AA
    assert len(msg.answer) == 1  # one RRset, never the whole node (RFC 8482)


@pytest.mark.asyncio
async def test_record_types(server: Running) -> None:
    msg = await ask(server.v4, "example.test.", "MX")
    assert answers(msg, "MX") == {"10 mail.example.test."}
    assert {
        (r.name.to_text(), rd.to_text()) for r in msg.additional for rd in r if r.rdtype == dns.rdatatype.A
    } == {("mail.example.test.", "192.0.2.25")}
    msg = await ask(server.v4, "_sip._udp.example.test.", "SRV")
    assert answers(msg, "SRV") == {"10 60 5060 sip.example.test."}
    msg = await ask(server.v4, "caa.example.test.", "CAA")
    assert answers(msg, "CAA") == {'0 issue "letsencrypt.org"', '128 iodef "mailto:sec@example.test"'}
    msg = await ask(server.v4, "53.2.0.192.in-addr.arpa.", "PTR")
    assert answers(msg, "PTR") == {"ns1.example.test."}
    msg = await ask(server.v4, "example.test.", "NS")
    assert answers(msg, "NS") == {"ns1.example.test.", "ns2.example.test."}
    msg = await ask(server.v4, "example.test.", "SOA")
    soa = msg.answer[0][0]
    assert (soa.serial, soa.minimum) == (2026112601, 120)
    msg = await ask(server.v4, "www.example.test.", "AAAA")
    assert answers(msg, "AAAA") == {"::1"}
    assert msg.answer[0].ttl == 30  # the pool's TTL


@pytest.mark.asyncio
async def test_txt_over_255_bytes_is_split(server: Running) -> None:
    msg = await ask(server.v4, "longtxt.example.test.", "TXT", tcp=True)
    strings = msg.answer[0][0].strings
    assert [len(s) for s in strings] == [255, 45]
    assert b"".join(strings) == b"x" * 300


@pytest.mark.asyncio
async def test_udp_truncation_and_tcp_full_answer(server: Running) -> None:
    plain = await ask(server.v4, "big.example.test.", "TXT", edns=None)
    assert plain.flags & dns.flags.TC
    assert len(plain.to_wire()) <= 512
    full = await ask(server.v4, "big.example.test.", "TXT", tcp=True, edns=None)
    assert not full.flags & dns.flags.TC
    assert len(full.answer[0]) == 6
    # With EDNS and a 1232-byte buffer the whole answer fits over UDP.
    msg = await ask(server.v4, "big.example.test.", "TXT", payload=1232)
    assert not msg.flags & dns.flags.TC and len(msg.answer[0]) == 6


@pytest.mark.asyncio
async def test_edns_opt_is_echoed_with_our_buffer_size(server: Running) -> None:
    msg = await ask(server.v4, "mail.example.test.", "A", payload=4096)
    assert msg.edns == 0
    assert msg.payload == 1232
    msg = await ask(server.v4, "mail.example.test.", "A", edns=None)
    assert msg.edns == -1  # no OPT in, none out


@pytest.mark.asyncio
async def test_do_bit_is_copied(server: Running) -> None:
    msg = await ask(server.v4, "mail.example.test.", "A", want_dnssec=True)
    assert msg.ednsflags & dns.flags.DO
    msg = await ask(server.v4, "mail.example.test.", "A")
    assert not msg.ednsflags & dns.flags.DO


@pytest.mark.asyncio
async def test_badvers(server: Running) -> None:
    msg = await ask(server.v4, "mail.example.test.", "A", edns=1)
    assert msg.rcode() == dns.rcode.BADVERS
    assert msg.edns == 0  # the version we speak
    assert not msg.answer


@pytest.mark.asyncio
async def test_unknown_options_are_not_echoed_and_nsid_is_answered(server: Running) -> None:
    unknown = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"hello")
    msg = await ask(server.v4, "mail.example.test.", "A", options=[unknown])
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.options == ()
    nsid = dns.edns.GenericOption(dns.edns.NSID, b"")
    msg = await ask(server.v4, "mail.example.test.", "A", options=[unknown, nsid])
    assert [(o.otype, o.to_wire()) for o in msg.options] == [(dns.edns.NSID, b"test-ns")]


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["udp4", "tcp4"])
async def test_zone_transfers_are_refused(server: Running, transport: str) -> None:
    where, tcp = endpoint(server, transport)
    for qtype in ("AXFR", "IXFR"):
        query = dns.message.make_query("example.test.", qtype)
        if tcp:
            msg = await dns.asyncquery.tcp(query, where.host, port=where.port, timeout=3)
        else:
            msg = await dns.asyncquery.udp(query, where.host, port=where.port, timeout=3)
        assert msg.rcode() == dns.rcode.REFUSED, qtype


@pytest.mark.asyncio
async def test_other_classes_are_refused(server: Running) -> None:
    query = dns.message.make_query("example.test.", "TXT", rdclass="CH")
    msg = await dns.asyncquery.udp(query, server.v4.host, port=server.v4.port, timeout=3)
    assert msg.rcode() == dns.rcode.REFUSED
