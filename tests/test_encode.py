"""The hand-written packer against dnslib as an oracle, and truncation in one pass.

dnslib packs the same answers record by record; both messages are parsed back
(by dnspython, an independent parser) and must hold the same records. Truncation
is checked for what RFC 2181 9 asks: within the limit, whole records only, the
answer section a prefix of the full one, and nothing more would have fitted.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rrset
import dnslib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodns.dns import encode
from geodns.dns.answer import Answer
from geodns.dns.encode import encode_answer
from geodns.dns.wire import parse_header, parse_query
from geodns.zone.names import Name
from geodns.zone.zone import CAA, MX, SOA, SRV, TXT, Address, RData, RRset, RType, Target

ORIGIN: Name = ("example", "test")
SOA_RRSET = RRset(
    ORIGIN, int(RType.SOA), 60, (SOA(("ns1", *ORIGIN), ("hostmaster", *ORIGIN), 7, 7200, 3600, 1209600, 60),)
)


def _label(name: Name) -> dnslib.DNSLabel:
    return dnslib.DNSLabel([label.encode("latin-1") for label in name])


def _dnslib_rdata(rtype: int, rdata: RData) -> object:
    """The oracle: the encoder this project used before, record for record."""
    if isinstance(rdata, Address):
        return dnslib.A(rdata.text) if rtype == RType.A else dnslib.AAAA(rdata.text)
    if isinstance(rdata, Target):
        return {RType.CNAME: dnslib.CNAME, RType.NS: dnslib.NS, RType.PTR: dnslib.PTR}[RType(rtype)](
            _label(rdata.name)
        )
    if isinstance(rdata, MX):
        return dnslib.MX(_label(rdata.exchange), rdata.preference)
    if isinstance(rdata, TXT):
        return dnslib.TXT(list(rdata.strings))
    if isinstance(rdata, SRV):
        return dnslib.SRV(rdata.priority, rdata.weight, rdata.port, _label(rdata.target))
    if isinstance(rdata, CAA):
        return dnslib.CAA(rdata.flags, rdata.tag, rdata.value)
    assert isinstance(rdata, SOA)
    return dnslib.SOA(
        _label(rdata.mname),
        _label(rdata.rname),
        (rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum),
    )


def oracle(query: bytes, answer: Answer) -> bytes:
    q = dnslib.DNSRecord.parse(query)
    reply = dnslib.DNSRecord(dnslib.DNSHeader(id=q.header.id, qr=1, aa=answer.aa, rcode=answer.rcode), q=q.q)
    for section, add in ((answer.answer, reply.add_answer), (answer.authority, reply.add_auth)):
        for rrset in section:
            for rdata in rrset.rdatas:
                add(
                    dnslib.RR(
                        _label(rrset.name), rrset.rtype, 1, rrset.ttl, _dnslib_rdata(rrset.rtype, rdata)
                    )
                )
    for rrset in answer.additional:
        for rdata in rrset.rdatas:
            reply.add_ar(
                dnslib.RR(_label(rrset.name), rrset.rtype, 1, rrset.ttl, _dnslib_rdata(rrset.rtype, rdata))
            )
    return bytes(reply.pack())


def ours(query: bytes, answer: Answer, limit: int = 65535) -> bytes:
    header = parse_header(query)
    assert header is not None
    parsed = parse_query(query, header)
    return encode_answer(header, parsed.question, answer, parsed.edns, limit, 1232, None)


def sections(wire: bytes) -> list[list[str]]:
    msg = dns.message.from_wire(wire)
    return [
        sorted(rr.to_text().lower() for rrset in section for rr in _split(rrset))
        for section in (msg.answer, msg.authority, msg.additional)
    ]


def _split(rrset: dns.rrset.RRset) -> list[dns.rrset.RRset]:
    return [dns.rrset.from_rdata(rrset.name, rrset.ttl, rd) for rd in rrset]


names = st.lists(st.sampled_from(["www", "mail", "a", "b", "xn--bcher-kva", "_sip", "_udp"]), max_size=3).map(
    lambda labels: (*labels, *ORIGIN)
)
addresses = st.builds(lambda i: Address(f"192.0.2.{i}"), st.integers(0, 255))
v6 = st.builds(lambda i: Address(f"2001:db8::{i:x}"), st.integers(0, 65535))
rdata_by_type: dict[int, st.SearchStrategy[RData]] = {
    int(RType.A): addresses,
    int(RType.AAAA): v6,
    int(RType.CNAME): st.builds(Target, names),
    int(RType.NS): st.builds(Target, names),
    int(RType.PTR): st.builds(Target, names),
    int(RType.MX): st.builds(MX, st.integers(0, 65535), names),
    int(RType.TXT): st.builds(TXT, st.lists(st.binary(max_size=255), min_size=1, max_size=3).map(tuple)),
    int(RType.SRV): st.builds(
        SRV, st.integers(0, 65535), st.integers(0, 65535), st.integers(0, 65535), names
    ),
    int(RType.CAA): st.builds(
        CAA, st.integers(0, 255), st.sampled_from(["issue", "iodef"]), st.text("abc.;=", max_size=20)
    ),
}


@st.composite
def rrsets(draw: st.DrawFn) -> RRset:
    rtype = draw(st.sampled_from(sorted(rdata_by_type)))
    most = 1 if rtype == RType.CNAME else 4  # a CNAME stands alone (a parser keeps one of several)
    rdatas = draw(st.lists(rdata_by_type[rtype], min_size=1, max_size=most, unique=True))
    return RRset(draw(names), rtype, draw(st.integers(0, 2**31 - 1)), tuple(rdatas))


def _section(size: int) -> st.SearchStrategy[list[RRset]]:
    # As in real answers, one RRset per owner and type in a section (a parser merges two).
    return st.lists(rrsets(), max_size=size, unique_by=lambda r: (r.name, r.rtype))


answers = st.builds(
    lambda a, n, x: Answer(rcode=0, aa=True, answer=tuple(a), authority=tuple(n), additional=tuple(x)),
    _section(4),
    _section(2),
    _section(2),
)
casings = st.sampled_from(["www.example.test.", "WWW.Example.TEST.", "mAiL.eXaMpLe.TeSt.", "example.test."])


@settings(max_examples=300, deadline=None)
@given(answers, casings)
def test_same_records_as_dnslib(answer: Answer, qname: str) -> None:
    query = dns.message.make_query(qname, "A", use_edns=False).to_wire()
    wire = ours(query, answer)
    assert sections(wire) == sections(oracle(query, answer))
    # The question is echoed exactly as sent (0x20), and the header mirrors the query.
    assert wire[12 : 12 + len(query) - 12] == query[12:]
    assert wire[:2] == query[:2]


@settings(max_examples=300, deadline=None)
@given(answers, st.integers(512, 1400), st.booleans())
def test_truncation_keeps_whole_records_and_nothing_more_would_fit(
    answer: Answer, limit: int, edns: bool
) -> None:
    query = dns.message.make_query("www.example.test.", "A", use_edns=0 if edns else False).to_wire()
    full = ours(query, answer)
    cut = ours(query, answer, limit)
    assert len(cut) <= limit
    msg = dns.message.from_wire(cut)
    if len(full) <= limit:
        assert cut == full
        return
    full_sections = sections(full)
    got = sections(cut)
    tc = bool(msg.flags & dns.flags.TC)
    if got[0] != full_sections[0] or (got[1] != full_sections[1] and got[1]):
        assert tc  # answer cut, or authority dropped: the client must retry over TCP
    if tc:
        # Whole answer records, the first ones in order.
        kept = sum(len(rrset) for rrset in msg.answer)
        prefix = _prefix(answer, kept)
        assert got[0] == sections(ours(query, prefix))[0]
        if kept < sum(len(r.rdatas) for r in answer.answer):
            # One more record would not have fitted.
            assert len(ours(query, _prefix(answer, kept + 1))) > limit
        assert not msg.additional and (not msg.authority or got[0] == full_sections[0])
    else:
        # Only the additional section may go without TC.
        assert got[:2] == full_sections[:2] and not msg.additional


def _prefix(answer: Answer, count: int) -> Answer:
    out: list[RRset] = []
    for rrset in answer.answer:
        take = rrset.rdatas[: max(0, count)]
        count -= len(take)
        if take:
            out.append(RRset(rrset.name, rrset.rtype, rrset.ttl, take))
    return Answer(rcode=answer.rcode, aa=answer.aa, answer=tuple(out))


def test_names_compress_case_insensitively_and_srv_targets_never() -> None:
    query = dns.message.make_query("WwW.ExAmPlE.TeSt.", "A", use_edns=False).to_wire()
    target = ("mail", *ORIGIN)
    answer = Answer(
        rcode=0,
        aa=True,
        answer=(
            RRset(("www", *ORIGIN), int(RType.CNAME), 60, (Target(target),)),
            RRset(target, int(RType.SRV), 60, (SRV(1, 2, 3, target),)),
        ),
    )
    wire = ours(query, answer)
    # Owner: a pointer to the question; CNAME target: "mail" + a pointer to the
    # question's "ExAmPlE.TeSt" (compressed whatever the case).
    after_question = 12 + len(query) - 12
    assert wire[after_question : after_question + 2] == b"\xc0\x0c"
    assert b"\x04mail\xc0\x10" in wire
    # SRV target written in full (RFC 2782), not as a pointer.
    assert wire.endswith(b"\x04mail\x07example\x04test\x00")
    assert sections(wire) == sections(oracle(query, answer))


def test_truncating_a_huge_answer_is_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """1,000 records cut at 1,232 bytes: each record is encoded at most once (the
    old encoder re-packed the whole message after dropping each record)."""
    calls = 0
    original = encode._address_wire

    def counting(text: str) -> bytes:
        nonlocal calls
        calls += 1
        return original(text)

    monkeypatch.setattr(encode, "_address_wire", counting)
    members = tuple(Address(f"10.{i // 256}.{i % 256}.1") for i in range(1000))
    answer = Answer(rcode=0, aa=True, answer=(RRset(("www", *ORIGIN), int(RType.A), 30, members),))
    query = dns.message.make_query("www.example.test.", "A", use_edns=0, payload=1232).to_wire()
    wire = ours(query, answer, 1232)
    msg = dns.message.from_wire(wire)
    assert msg.flags & dns.flags.TC and 60 < len(msg.answer[0]) < 80
    assert calls <= len(msg.answer[0]) + 1  # the records kept, and at most the one that did not fit
    calls = 0
    full = dns.message.from_wire(ours(query, answer))
    assert len(full.answer[0]) == 1000 and calls == 1000


def test_edns_header_and_opt_are_written_by_hand() -> None:
    query = dns.message.make_query("example.test.", "SOA", use_edns=0, want_dnssec=True)
    query.flags |= dns.flags.CD
    wire = query.to_wire()
    reply = dns.message.from_wire(ours(wire, Answer(rcode=0, aa=True, answer=(SOA_RRSET,))))
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.AA and reply.flags & dns.flags.CD
    assert reply.flags & dns.flags.RD and not reply.flags & dns.flags.AD
    assert reply.edns == 0 and reply.ednsflags & dns.flags.DO and reply.payload == 1232
    assert (
        reply.answer[0].to_text()
        == "example.test. 60 IN SOA ns1.example.test. hostmaster.example.test. 7 7200 3600 1209600 60"
    )


# NXDOMAIN / NODATA: the SOA comes from a per-zone template, pointers into the question.
zone_names = st.sampled_from([(), ("test",), ORIGIN, ("2", "0", "192", "in-addr", "arpa")])
soa_targets = st.sampled_from(["ns1", "hostmaster", "a.b"]).map(lambda t: tuple(t.split(".")))


@st.composite
def negative_cases(draw: st.DrawFn) -> tuple[bytes, Answer]:
    origin = draw(zone_names)
    above = draw(st.lists(st.sampled_from(["www", "NX", "a-b", "Mail", "*"]), max_size=3))
    outside = draw(st.booleans())  # mname/rname in another zone: written out in full
    mname = (*draw(soa_targets), *(("elsewhere", "net") if outside else origin))
    rname = (*draw(soa_targets), *origin)
    soa = SOA(mname, rname, draw(st.integers(0, 2**32 - 1)), 7200, 3600, 1209600, 60)
    rrset = RRset(origin, int(RType.SOA), draw(st.integers(0, 86400)), (soa,))
    qname = ".".join((*above, *origin)) + "."
    use_edns = draw(st.sampled_from([False, 0]))
    query = dns.message.make_query(qname if qname != "." else ".", "AAAA", use_edns=use_edns).to_wire()
    return query, Answer(rcode=draw(st.sampled_from([0, 3])), aa=True, authority=(rrset,))


@settings(max_examples=300, deadline=None)
@given(negative_cases())
def test_negative_answers_from_the_template_hold_what_the_packer_writes(case: tuple[bytes, Answer]) -> None:
    query, answer = case
    header = parse_header(query)
    assert header is not None
    parsed = parse_query(query, header)
    opt = b"" if parsed.edns is None else encode.opt_record(1232, 0, False, [])
    fast = ours(query, answer)
    generic = encode.packed(header, parsed.question, answer, opt, 65535 - len(opt))
    template = encode._negative(header, parsed.question, answer, answer.authority[0], 65535, bool(opt))
    assert template is not None and template + opt == fast  # the template wrote it
    assert sections(fast) == sections(generic) == sections(oracle(query, answer))
    theirs, mine = dns.message.from_wire(generic), dns.message.from_wire(fast)
    assert (mine.id, mine.flags, mine.rcode(), mine.edns) == (
        theirs.id,
        theirs.flags,
        theirs.rcode(),
        theirs.edns,
    )
    assert (
        fast[12 : len(query) - (11 if parsed.edns else 0)]
        == query[12 : len(query) - (11 if parsed.edns else 0)]
    )


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["www.example.test.", "WwW.eXample.TEST."]),
    st.sampled_from([int(RType.A), int(RType.AAAA)]),
    st.integers(1, 300),
    st.sampled_from([False, 0]),
    st.sampled_from([512, 700, 1232, 65535]),
)
def test_address_answers_written_directly_hold_what_the_packer_writes(
    qname: str, rtype: int, count: int, use_edns: bool | int, limit: int
) -> None:
    """A pool's answer (A/AAAA of the name asked, nothing else) skips the generic
    packer: same records, same truncation (whole records, TC when some are left out)."""
    rdatas = tuple(
        Address(f"192.0.2.{i % 256}" if rtype == RType.A else f"2001:db8::{i:x}") for i in range(count)
    )
    answer = Answer(rcode=0, aa=True, answer=(RRset(("www", *ORIGIN), rtype, 30, rdatas),))
    query = dns.message.make_query(qname, RType(rtype).name, use_edns=use_edns).to_wire()
    header = parse_header(query)
    assert header is not None
    parsed = parse_query(query, header)
    opt = b"" if parsed.edns is None else encode.opt_record(1232, 0, False, [])
    fast = ours(query, answer, limit)
    direct = encode._addresses_only(header, parsed.question, answer, limit - len(opt), bool(opt))
    assert direct is not None and direct + opt == fast  # written directly
    generic = encode.packed(header, parsed.question, answer, opt, limit - len(opt))
    assert len(fast) <= limit and sections(fast) == sections(generic)
    mine, theirs = dns.message.from_wire(fast), dns.message.from_wire(generic)
    assert (mine.flags, mine.edns) == (theirs.flags, theirs.edns)
    if limit == 65535:
        assert sections(fast) == sections(oracle(query, answer))
