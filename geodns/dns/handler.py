"""One DNS message in, at most one out: the protocol rules around `answer.resolve`.

This is the boundary where untrusted bytes meet our code, so it is total:
every input yields a response or a deliberate drop, never an exception.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from geodns.dns.answer import (
    FORMERR,
    NOTIMP,
    REFUSED,
    SERVFAIL,
    Client,
    PoolSource,
    resolve,
)
from geodns.dns.encode import MAX_TCP_MESSAGE, badkey, encode_answer, encode_simple
from geodns.dns.fastcache import AnswerCache
from geodns.dns.wire import (
    OPT_ECS,
    PLAIN_UDP,
    Header,
    Malformed,
    parse_ecs,
    parse_header,
    parse_query,
    parse_question,
    udp_limit,
)
from geodns.zone.zone import ZoneSet

log = logging.getLogger(__name__)

CLASS_IN = 1
BADVERS = 16
TYPE_OPT = 41
TYPE_IXFR = 251
TYPE_AXFR = 252
NOTAUTH = 9
UNSUPPORTED_META = frozenset({249, 250, 253, 254})  # TKEY, TSIG, MAILB, MAILA


@dataclass(frozen=True)
class ServingState:
    """Everything a query reads, swapped as one reference on reload and on every
    new health snapshot. The answer cache lives here: a reload starts an empty
    one; a new snapshot passes the old one on without the answers of the pools
    whose decision changed (`AnswerCache.invalidate`), so a state change reaches
    the very next query and static answers stay cached."""

    zones: ZoneSet
    pools: PoolSource
    nsid: bytes | None = None
    edns_udp_size: int = 1232
    cache: AnswerCache = field(default_factory=AnswerCache)


class Outcome:
    """What the full path tells the answer cache about one reply."""

    __slots__ = ("cacheable", "depends", "pools")

    def __init__(self) -> None:
        self.cacheable = False
        self.depends = 0
        self.pools: tuple[str, ...] = ()  # whose decisions shaped it: a change of theirs drops it


TCP_CLOSE_REASONS = {
    "idle": "no query for tcp_idle_timeout",
    "slow": "a query not whole within tcp_message_timeout of its first byte",
    "lifetime": "open for tcp_max_lifetime",
    "not_reading": "replies left unread (over tcp_max_queued, or for tcp_message_timeout)",
    "evicted": "closed for a new client while every slot was taken",
    "short": "a length prefix shorter than a DNS header",
}


class Stats:
    """Counters the server keeps for /metrics; plain ints, no locking (one loop)."""

    __slots__ = (
        "answers",
        "cache_hits",
        "geo",
        "dropped",
        "formerr",
        "internal_errors",
        "queries",
        "rate_limited",
        "rate_slipped",
        *(f"tcp_closed_{reason}" for reason in TCP_CLOSE_REASONS),
    )

    def __init__(self) -> None:
        # Replies sent, by (rcode << 16 | qtype), qtype folded to 258 above CAA (257) so that
        # no query can grow this: at most 16 x 259 keys. Counted at the send.
        self.answers: dict[int, int] = {}
        self.geo: dict[int, int] = {}  # geo answers by decision key (see steering.policy.steering_label)
        self.queries = 0
        self.cache_hits = 0
        self.dropped = 0
        self.formerr = 0
        self.internal_errors = 0
        self.rate_limited = 0  # UDP responses withheld by rate limiting (dropped or slipped)
        self.rate_slipped = 0  # of those, sent empty and truncated
        # TCP connections we closed, by reason (see TCP_CLOSE_REASONS).
        self.tcp_closed_idle = 0
        self.tcp_closed_slow = 0
        self.tcp_closed_lifetime = 0
        self.tcp_closed_not_reading = 0
        self.tcp_closed_evicted = 0
        self.tcp_closed_short = 0

    def count_tcp_close(self, reason: str) -> None:
        name = f"tcp_closed_{reason}"
        setattr(self, name, getattr(self, name) + 1)


COUNTERS: tuple[str, ...] = tuple(n for n in Stats.__slots__ if n not in ("answers", "geo"))  # int counters


def count_answer(answers: dict[int, int], query: bytes, reply: bytes) -> None:
    """One reply, by rcode and the query's type. The question's name ends at its first
    zero byte (label lengths are never zero; a zero inside a label, which no real
    client sends, only files the count under another type)."""
    end = query.find(b"\0", 12)
    qtype = (query[end + 1] << 8 | query[end + 2]) if 0 < end < len(query) - 2 else 0
    key = (reply[3] & 15) << 16 | (qtype if qtype < 258 else 258)
    answers[key] = answers.get(key, 0) + 1


def handle(
    data: bytes, source: str, udp: bool, state: ServingState, stats: Stats, outcome: Outcome | None = None
) -> bytes | None:
    """Answer one message from `source`. None means: send nothing. The full path:
    `fastpath.answer` calls it on a cache miss and learns from `outcome`."""
    stats.queries += 1
    header = parse_header(data)
    if header is None or header.is_response:
        # No header to answer, or a response (answering those feeds reflection loops).
        stats.dropped += 1
        return None
    try:
        return _handle(data, header, source, udp, state, stats, outcome)
    except Exception:
        # A bug of ours, not the client's: say so loudly, answer SERVFAIL, keep serving.
        stats.internal_errors += 1
        log.exception("internal error answering a query from %s; replied SERVFAIL", source)
        try:
            return encode_simple(header, None, SERVFAIL, None, state.edns_udp_size, None)
        except Exception:
            log.exception("could not even encode SERVFAIL; dropping")
            return None


def _replayable(outcome: Outcome | None) -> None:
    """This reply follows from the query's bytes alone: the cache may replay it."""
    if outcome is not None:
        outcome.cacheable = True


def _handle(
    data: bytes,
    header: Header,
    source: str,
    udp: bool,
    state: ServingState,
    stats: Stats,
    outcome: Outcome | None,
) -> bytes | None:
    size = state.edns_udp_size
    if header.opcode != 0:
        question = None
        if header.qdcount == 1:
            try:
                question = parse_question(data)
            except Malformed:
                question = None
        return encode_simple(header, question, NOTIMP, None, size, None)
    try:
        query = parse_query(data, header)
    except Malformed as exc:
        stats.formerr += 1
        log.debug("FORMERR to %s: %s", source, exc)
        ok_opt = exc.edns if exc.edns is not None and exc.edns.version == 0 else None
        return encode_simple(header, None, FORMERR, ok_opt, size, None)

    q, edns = query.question, query.edns
    if query.tsig is not None:
        # Signed with a key we do not have (we have none): NOTAUTH, and an unsigned
        # TSIG saying BADKEY, never data (RFC 8945 5.2).
        return encode_simple(header, q, NOTAUTH, edns, size, None, tsig=badkey(query.tsig, header.id))
    if query.opt_count > 1:
        stats.formerr += 1
        return encode_simple(header, q, FORMERR, None, size, None)
    if edns is not None and edns.version > 0:
        # RFC 6891 6.1.3: BADVERS, answered with the highest version we do (0).
        _replayable(outcome)
        return encode_simple(header, q, BADVERS, edns, size, state.nsid)
    if q.qtype == TYPE_IXFR:
        # An IXFR carries the client's SOA in the authority section: not a malformed
        # query, a transfer we do not serve (REFUSED, like AXFR).
        _replayable(outcome)
        return encode_simple(header, q, REFUSED, edns, size, state.nsid)
    if header.ancount or header.nscount:
        stats.formerr += 1
        return encode_simple(header, q, FORMERR, edns, size, state.nsid)
    if q.qtype == TYPE_OPT:
        stats.formerr += 1
        return encode_simple(header, q, FORMERR, edns, size, state.nsid)
    if q.qtype in UNSUPPORTED_META:
        return encode_simple(header, q, NOTIMP, edns, size, state.nsid)
    if q.qclass != CLASS_IN or q.qtype in (TYPE_AXFR, TYPE_IXFR):
        _replayable(outcome)
        return encode_simple(header, q, REFUSED, edns, size, state.nsid)

    ecs = None
    client = Client(source, None, source)
    if edns is not None and (ecs_data := edns.option(OPT_ECS)) is not None:
        try:
            ecs = parse_ecs(ecs_data)
        except Malformed as exc:
            stats.formerr += 1
            log.debug("FORMERR to %s: %s", source, exc)
            return encode_simple(header, q, FORMERR, edns, size, state.nsid)
        client = Client(ecs.address, ecs.source_prefix, source, ecs.ip)
    answer = resolve(q.name, q.qtype, state.zones, state.pools, client)
    if not udp:
        limit = MAX_TCP_MESSAGE
    elif edns is None:
        limit = PLAIN_UDP
    else:
        limit = udp_limit(edns.udp_size, size)
    reply = encode_answer(header, q, answer, edns, limit, size, state.nsid, ecs)
    if outcome is not None and answer.rcode != SERVFAIL:
        # Everything that shaped this reply is in the query's bytes after the ID
        # (name and its case, type, class, flags, EDNS size/DO/options), plus
        # `depends`. SERVFAIL is never cached: the next query should try again.
        outcome.cacheable = True
        outcome.depends = answer.depends
        outcome.pools = answer.pools
    return reply
