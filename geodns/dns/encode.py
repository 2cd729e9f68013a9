"""Answer -> wire bytes. dnslib packs records (with name compression); the
header, question and OPT are written by hand because their bits must mirror
the query exactly (ID, RD, CD, the client's letter case) and dnslib's
`reply()` copies bits it should not (the AD bit among them)."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import dnslib

from geodns.dns.answer import Answer
from geodns.dns.wire import AA, CD, HEADER, OPT_ECS, OPT_NSID, QR, RD, TC, Ecs, Edns, Header, Question
from geodns.zone.names import Name
from geodns.zone.zone import CAA, MX, SOA, SRV, TXT, Address, RData, RRset, RType, Target

MAX_TCP_MESSAGE = 65535
OPT_HEADER = struct.Struct("!BHHBBHH")  # root name, type, udp size, ext-rcode, version, flags, rdlen


def _label(name: Name) -> dnslib.DNSLabel:
    return dnslib.DNSLabel([label.encode("latin-1") for label in name])


def _rdata(rtype: int, rdata: RData) -> object:
    if isinstance(rdata, Address):
        return dnslib.A(rdata.text) if rtype == RType.A else dnslib.AAAA(rdata.text)
    if isinstance(rdata, Target):
        cls = {RType.CNAME: dnslib.CNAME, RType.NS: dnslib.NS, RType.PTR: dnslib.PTR}[RType(rtype)]
        return cls(_label(rdata.name))
    if isinstance(rdata, MX):
        return dnslib.MX(_label(rdata.exchange), rdata.preference)
    if isinstance(rdata, TXT):
        return dnslib.TXT(list(rdata.strings))
    if isinstance(rdata, SRV):
        return dnslib.SRV(rdata.priority, rdata.weight, rdata.port, _label(rdata.target))
    if isinstance(rdata, CAA):
        return dnslib.CAA(rdata.flags, rdata.tag, rdata.value)
    if isinstance(rdata, SOA):
        return dnslib.SOA(
            _label(rdata.mname),
            _label(rdata.rname),
            (rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum),
        )
    raise TypeError(f"no encoder for {type(rdata).__name__}")


def opt_record(edns_size: int, ext_rcode: int, do: bool, options: Iterable[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("!HH", code, len(data)) + data for code, data in options)
    flags = 0x8000 if do else 0
    return OPT_HEADER.pack(0, 41, edns_size, ext_rcode, 0, flags, len(body)) + body


def response_flags(query_flags: int, rcode: int, aa: bool = False, tc: bool = False) -> int:
    """QR set; opcode, RD and CD mirrored (RFC 1035, RFC 4035 3.1.6); RA, AD, Z clear."""
    flags = QR | (query_flags & (0x7800 | RD | CD)) | (rcode & 0xF)
    if aa:
        flags |= AA
    if tc:
        flags |= TC
    return flags


def reply_options(
    edns: Edns, nsid: bytes | None, ecs: Ecs | None = None, scope: int = 0
) -> list[tuple[int, bytes]]:
    """Only options we understand are answered; unknown ones are never echoed.
    ECS is answered whenever the query carried a valid one (scope 0 when the
    answer did not depend on the client)."""
    options = []
    if nsid is not None and edns.option(OPT_NSID) is not None:
        options.append((OPT_NSID, nsid))
    if ecs is not None:
        options.append((OPT_ECS, ecs.reply(scope)))
    return options


def encode_simple(
    header: Header,
    question: Question | None,
    rcode: int,
    edns: Edns | None,
    edns_size: int,
    nsid: bytes | None,
    aa: bool = False,
) -> bytes:
    """A response with no records: errors, REFUSED, BADVERS."""
    arcount = 1 if edns is not None else 0
    out = HEADER.pack(header.id, response_flags(header.flags, rcode, aa), 1 if question else 0, 0, 0, arcount)
    if question is not None:
        out += question.wire
    if edns is not None:
        out += opt_record(edns_size, rcode >> 4, edns.do, reply_options(edns, nsid))
    return out


def _pack_rrsets(buf: dnslib.DNSBuffer, rrsets: Iterable[RRset], qname: Name, owner: dnslib.DNSLabel) -> int:
    count = 0
    for rrset in rrsets:
        rname = owner if rrset.name == qname else _label(rrset.name)
        for rdata in rrset.rdatas:
            dnslib.RR(rname, rrset.rtype, 1, rrset.ttl, _rdata(rrset.rtype, rdata)).pack(buf)
            count += 1
    return count


def encode_answer(
    header: Header,
    question: Question,
    answer: Answer,
    edns: Edns | None,
    limit: int,
    edns_size: int,
    nsid: bytes | None,
    ecs: Ecs | None = None,
) -> bytes:
    """Pack `answer`; if it exceeds `limit` bytes, shed the additional section,
    then set TC and keep as many whole answer records as fit (RFC 2181 9)."""
    opt = b""
    if edns is not None:
        options = reply_options(edns, nsid, ecs, answer.ecs_scope or 0)
        opt = opt_record(edns_size, answer.rcode >> 4, edns.do, options)
    owner = dnslib.DNSLabel(list(question.labels))
    sections = [list(answer.answer), list(answer.authority), list(answer.additional)]
    tc = False
    while True:
        buf = dnslib.DNSBuffer()
        buf.append(bytes(HEADER.size))
        buf.encode_name(owner)  # question name first, so answers compress against it
        buf.pack("!HH", question.qtype, question.qclass)
        counts = [_pack_rrsets(buf, section, question.name, owner) for section in sections]
        body = bytes(buf.data)
        if len(body) + len(opt) <= limit or not any(sections):
            break
        if sections[2]:
            sections[2] = []  # additional data is optional: drop it, no TC
        elif sections[1]:
            tc, sections[1] = True, []
        else:
            tc = True
            rrsets = sections[0]
            last = rrsets[-1]
            if len(last.rdatas) > 1:
                rrsets[-1] = RRset(last.name, last.rtype, last.ttl, last.rdatas[:-1])
            else:
                rrsets.pop()
    flags = response_flags(header.flags, answer.rcode, answer.aa, tc)
    head = HEADER.pack(header.id, flags, 1, counts[0], counts[1], counts[2] + (1 if opt else 0))
    # body already holds the question exactly as sent (labels keep the client's case).
    return head + body[HEADER.size :] + opt
