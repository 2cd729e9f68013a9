"""Answer -> wire bytes, packed by hand in one pass.

The header, question and OPT mirror the query exactly (ID, RD, CD, the
client's letter case: the question is copied as sent). Records are written
once, in order, with name compression against everything before them
(case-insensitive, so names compress into the client's question whatever its
case); a record set's owner and fixed fields are encoded once for all its
records. Truncation is decided while packing: the first record that would
cross the limit ends the section, so a 1,000-member answer costs one pass,
never a re-encode per dropped record. dnslib packs the same answers in the
tests, as an oracle.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from socket import AF_INET, AF_INET6, inet_pton
from typing import NamedTuple

from geodns.dns.answer import Answer
from geodns.dns.wire import AA, CD, HEADER, OPT_ECS, OPT_NSID, QR, RD, TC, Ecs, Edns, Header, Question, Tsig
from geodns.zone.names import Name
from geodns.zone.zone import CAA, MX, SOA, SRV, TXT, Address, RData, RRset, RType, Target

MAX_TCP_MESSAGE = 65535
OPT_HEADER = struct.Struct("!BHHBBHH")  # root name, type, udp size, ext-rcode, version, flags, rdlen


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
    tsig: bytes = b"",
) -> bytes:
    """A response with no records: errors, REFUSED, BADVERS (and a BADKEY TSIG)."""
    arcount = (1 if edns is not None else 0) + (1 if tsig else 0)
    out = HEADER.pack(header.id, response_flags(header.flags, rcode, aa), 1 if question else 0, 0, 0, arcount)
    if question is not None:
        out += question.wire
    if edns is not None:
        out += opt_record(edns_size, rcode >> 4, edns.do, reply_options(edns, nsid))
    return out + tsig  # the TSIG goes last (RFC 8945 4.2)


TSIG_BADKEY = 17
_TSIG_FIXED = struct.Struct("!HHIH")  # type, class ANY, TTL 0, rdlength


def badkey(tsig: Tsig, original_id: int) -> bytes:
    """An unsigned TSIG record saying BADKEY (RFC 8945 5.2): the key name and
    algorithm of the query, its time and fudge, no MAC."""
    rdata = (
        tsig.algorithm
        + tsig.time_signed.to_bytes(6, "big")
        + struct.pack("!HHHHH", tsig.fudge, 0, original_id, TSIG_BADKEY, 0)
    )
    return tsig.key + _TSIG_FIXED.pack(250, 255, 0, len(rdata)) + rdata


CLASS_IN = 1
_RR_FIXED = struct.Struct("!HHI")  # type, class, ttl (rdlength follows)
_U16 = struct.Struct("!H")
_MX = struct.Struct("!H")
_SRV = struct.Struct("!HHH")
_SOA_TIMES = struct.Struct("!IIIII")
_MAX_POINTER = 0x3FFF
_ADDRESS_SIZES = {int(RType.A): 4, int(RType.AAAA): 16}
_NAME_TYPES = frozenset({int(RType.CNAME), int(RType.NS), int(RType.PTR)})
_QUESTION_POINTER = _U16.pack(0xC000 | HEADER.size)  # the question's name: always at offset 12


def _address_wire(text: str) -> bytes:
    """A record's address (validated at load) as its 4 or 16 bytes: inet_pton is a
    C call, ~7x cheaper than ipaddress and without a memo to miss (a 100,000-name
    walk missed a 65,536-entry one on every query)."""
    return inet_pton(AF_INET6 if ":" in text else AF_INET, text)


class _Packer:
    """One message being written: the bytes so far and where each name suffix
    (lowercase) already sits, for compression pointers."""

    __slots__ = ("buf", "names")

    def __init__(self, question: Question) -> None:
        self.buf = bytearray(HEADER.size)
        self.buf += question.wire
        names: dict[Name, int] = {}
        offset = HEADER.size
        qname = question.name
        for i, label in enumerate(qname):
            names[qname[i:]] = offset
            offset += 1 + len(label)
        self.names = names

    def name(self, name: Name) -> None:
        buf, names = self.buf, self.names
        for i in range(len(name)):
            suffix = name[i:]
            pointer = names.get(suffix)
            if pointer is not None:
                buf += _U16.pack(0xC000 | pointer)
                return
            if len(buf) <= _MAX_POINTER:
                names[suffix] = len(buf)
            label = name[i].encode("latin-1")
            buf.append(len(label))
            buf += label
        buf.append(0)

    def plain_name(self, name: Name) -> None:
        """Uncompressed, for SRV targets (RFC 2782)."""
        buf = self.buf
        for label in name:
            raw = label.encode("latin-1")
            buf.append(len(raw))
            buf += raw
        buf.append(0)

    def rdata(self, rtype: int, rdata: RData) -> None:
        buf = self.buf
        if isinstance(rdata, Address):
            buf += _address_wire(rdata.text)
        elif isinstance(rdata, Target):
            if rtype not in _NAME_TYPES:
                raise TypeError(f"no encoder for a name in type {rtype}")
            self.name(rdata.name)
        elif isinstance(rdata, MX):
            buf += _MX.pack(rdata.preference)
            self.name(rdata.exchange)
        elif isinstance(rdata, TXT):
            for chunk in rdata.strings:
                buf.append(len(chunk))
                buf += chunk
        elif isinstance(rdata, SRV):
            buf += _SRV.pack(rdata.priority, rdata.weight, rdata.port)
            self.plain_name(rdata.target)
        elif isinstance(rdata, CAA):
            tag = rdata.tag.encode()
            buf.append(rdata.flags)
            buf.append(len(tag))
            buf += tag
            buf += rdata.value.encode()
        elif isinstance(rdata, SOA):
            self.name(rdata.mname)
            self.name(rdata.rname)
            buf += _SOA_TIMES.pack(rdata.serial, rdata.refresh, rdata.retry, rdata.expire, rdata.minimum)
        else:
            raise TypeError(f"no encoder for {type(rdata).__name__}")

    def rrset(self, rrset: RRset, limit: int) -> tuple[int, bool]:
        """Write the records of `rrset` that fit within `limit` bytes:
        (records written, whether all of them fit)."""
        buf = self.buf
        written = 0
        head = b""
        rdatas = rrset.rdatas
        for rdata in rdatas:
            if head and rrset.rtype in _ADDRESS_SIZES:
                return self._addresses(rrset, head, written, limit)
            mark = len(buf)
            if head:
                buf += head  # owner pointer + type, class, TTL: same for every record of the set
            else:
                self.name(rrset.name)
                owner = self.names.get(rrset.name)
                fixed = _RR_FIXED.pack(rrset.rtype, CLASS_IN, rrset.ttl)
                buf += fixed
                if owner is not None:
                    head = _U16.pack(0xC000 | owner) + fixed
            length_at = len(buf)
            buf += b"\0\0"
            self.rdata(rrset.rtype, rdata)
            buf[length_at : length_at + 2] = _U16.pack(len(buf) - length_at - 2)
            if len(buf) > limit:
                self.rewind(mark)
                return written, False
            written += 1
        return written, True

    def _addresses(self, rrset: RRset, head: bytes, done: int, limit: int) -> tuple[int, bool]:
        """The rest of an A/AAAA set after its first record: every record has the
        same size, so how many fit is known before writing them in one go."""
        size = _ADDRESS_SIZES[rrset.rtype]
        rdlength = _U16.pack(size)
        room = (limit - len(self.buf)) // (len(head) + 2 + size)
        rest = rrset.rdatas[done : done + max(0, room)]
        self.buf += b"".join([head + rdlength + _address_wire(r.text) for r in rest])  # type: ignore[union-attr]
        written = done + len(rest)
        return written, written == len(rrset.rdatas)

    def section(self, rrsets: Iterable[RRset], limit: int) -> tuple[int, bool]:
        count = 0
        for rrset in rrsets:
            written, fits = self.rrset(rrset, limit)
            count += written
            if not fits:
                return count, False
        return count, True

    def rewind(self, mark: int) -> None:
        """Forget everything from `mark` on, compression targets included."""
        del self.buf[mark:]
        self.names = {suffix: at for suffix, at in self.names.items() if at < mark}


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
    """Pack `answer` within `limit` bytes (RFC 2181 9): what does not fit of the
    additional section is left out silently; if the authority section does not
    fit it is left out with TC; if the answer section does not fit, TC is set
    and the whole records that fit are kept."""
    opt = b""
    if edns is not None:
        options = reply_options(edns, nsid, ecs, answer.ecs_scope or 0)
        opt = opt_record(edns_size, answer.rcode >> 4, edns.do, options)
    body_limit = limit - len(opt)
    if not answer.answer and not answer.additional and len(answer.authority) == 1:
        # NXDOMAIN or NODATA: the zone's SOA from a template, without a packer.
        fast = _negative(header, question, answer, answer.authority[0], body_limit, bool(opt))
        if fast is not None:
            return fast + opt
    if len(answer.answer) == 1 and not answer.authority and not answer.additional:
        fast = _addresses_only(header, question, answer, body_limit, bool(opt))
        if fast is not None:
            return fast + opt
    return packed(header, question, answer, opt, body_limit)


def _addresses_only(
    header: Header, question: Question, answer: Answer, limit: int, opt: bool
) -> bytes | None:
    """The commonest answer: the A or AAAA records of the name asked, each one a
    pointer to the question, the fixed fields, and the address. None when the
    answer is any other shape (the generic packer then writes it)."""
    rrset = answer.answer[0]
    size = _ADDRESS_SIZES.get(rrset.rtype)
    if size is None or rrset.name != question.name:
        return None
    head = _QUESTION_POINTER + _RR_FIXED.pack(rrset.rtype, CLASS_IN, rrset.ttl) + _U16.pack(size)
    room = (limit - HEADER.size - len(question.wire)) // (len(head) + size)
    fitting = rrset.rdatas[: max(0, room)]
    tc = len(fitting) < len(rrset.rdatas)
    flags = response_flags(header.flags, answer.rcode, answer.aa, tc)
    return (
        HEADER.pack(header.id, flags, 1, len(fitting), 0, 1 if opt else 0)
        + question.wire
        + b"".join([head + _address_wire(r.text) for r in fitting])  # type: ignore[union-attr]
    )


def packed(header: Header, question: Question, answer: Answer, opt: bytes, body_limit: int) -> bytes:
    """Any answer, by the generic packer (`opt` is the reply's OPT record or b"")."""
    packer = _Packer(question)
    counts = [0, 0, 0]
    tc = False
    counts[0], fits = packer.section(answer.answer, body_limit)
    if not fits:
        tc = True
    else:
        mark = len(packer.buf)
        counts[1], fits = packer.section(answer.authority, body_limit)
        if not fits:
            packer.rewind(mark)
            tc, counts[1] = True, 0
        else:
            mark = len(packer.buf)
            counts[2], fits = packer.section(answer.additional, body_limit)
            if not fits:
                packer.rewind(mark)  # additional data is optional: no TC
                counts[2] = 0
    flags = response_flags(header.flags, answer.rcode, answer.aa, tc)
    buf = packer.buf
    HEADER.pack_into(buf, 0, header.id, flags, 1, counts[0], counts[1], counts[2] + (1 if opt else 0))
    buf += opt
    return bytes(buf)


class _SoaTemplate(NamedTuple):
    """A negative answer's SOA record, pre-encoded: the owner (the zone's apex) and
    any name under it become pointers to the apex's place in the question."""

    rrset: RRset  # what it was made from (the cache's identity check)
    fixed: bytes  # type, class, TTL
    mname: tuple[bytes, bool]  # labels before the apex + True, or the whole name + False
    rname: tuple[bytes, bool]
    times: bytes


_SOA_TEMPLATES: dict[int, _SoaTemplate] = {}


def _relative(name: Name, origin: Name) -> tuple[bytes, bool]:
    def wire(labels: Name) -> bytes:
        return b"".join(bytes([len(raw)]) + raw for raw in (label.encode("latin-1") for label in labels))

    if len(name) >= len(origin) and name[len(name) - len(origin) :] == origin:
        return wire(name[: len(name) - len(origin)]), True
    return wire(name) + b"\0", False


def _soa_template(rrset: RRset) -> _SoaTemplate | None:
    found = _SOA_TEMPLATES.get(id(rrset))
    if found is not None and found.rrset is rrset:
        return found
    if rrset.rtype != RType.SOA or len(rrset.rdatas) != 1 or not isinstance(rrset.rdatas[0], SOA):
        return None
    soa = rrset.rdatas[0]
    made = _SoaTemplate(
        rrset,
        _RR_FIXED.pack(rrset.rtype, CLASS_IN, rrset.ttl),
        _relative(soa.mname, rrset.name),
        _relative(soa.rname, rrset.name),
        _SOA_TIMES.pack(soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
    )
    if len(_SOA_TEMPLATES) >= 4096:  # zones come and go with reloads: never grow without bound
        _SOA_TEMPLATES.clear()
    _SOA_TEMPLATES[id(rrset)] = made
    return made


def _negative(
    header: Header, question: Question, answer: Answer, soa: RRset, limit: int, opt: bool
) -> bytes | None:
    """An answer whose only record is its zone's SOA in the authority section; None
    when the template does not apply (the generic packer then writes it)."""
    template = _soa_template(soa)
    qname, origin = question.name, soa.name
    above = len(qname) - len(origin)
    if template is None or above < 0 or qname[above:] != origin:
        return None
    apex = HEADER.size + sum(1 + len(label) for label in question.labels[:above])
    pointer = _U16.pack(0xC000 | apex)
    head, under = template.mname
    rdata = head + pointer if under else head
    head, under = template.rname
    rdata += (head + pointer if under else head) + template.times
    flags = response_flags(header.flags, answer.rcode, answer.aa)
    out = (
        HEADER.pack(header.id, flags, 1, 0, 1, 1 if opt else 0)
        + question.wire
        + pointer
        + template.fixed
        + _U16.pack(len(rdata))
        + rdata
    )
    return out if len(out) <= limit else None
