"""Answer construction (pure): (question, client, zones, pools) -> Answer.

Follows RFC 1034 section 4.3.2 with the refinements resolvers rely on:
NODATA for empty non-terminals (RFC 8020 spirit), wildcard synthesis
(RFC 4592), referrals at delegations, CNAME chains across served zones with
the final rcode (RFC 6604), minimal ANY (RFC 8482) and negative answers with
the SOA whose TTL is min(SOA TTL, minimum) (RFC 2308).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import NamedTuple, Protocol

from geodns.zone.names import Name
from geodns.zone.zone import MX, SRV, Entry, Node, PoolRRset, RRset, RType, Target, Zone, ZoneSet

NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5

MAX_CNAME_CHAIN = 12
_WITH_TARGETS = frozenset({int(RType.NS), int(RType.MX), int(RType.SRV)})  # additional-section addresses

# What an answer depends on beyond the query's bytes (for the answer cache).
DEPENDS_RANDOM = 1  # a random draw (weighted / all pools): cache several variants
DEPENDS_CLIENT = 2  # the packet's source address (geo without ECS): cache per topology rule
DEPENDS_ECS = 4  # the EDNS Client Subnet's address (geo with ECS): never replayed to another subnet


class Client(NamedTuple):
    """Who asks: the address used for steering (ECS when present, else source)."""

    address: str  # the ECS address when ECS was sent, else the source address
    ecs_prefix: int | None = None  # source prefix length when ECS was sent
    source: str = ""  # the packet's source address (for pools told to ignore ECS)
    ecs_ip: IPv4Address | IPv6Address | None = None  # the ECS address, parsed (saves parsing `address`)


class PoolResult(NamedTuple):
    rrset: RRset | None  # None or empty rdatas -> NODATA
    servfail: bool = False
    ecs_scope: int | None = None
    depends: int = 0  # DEPENDS_* bits: what besides the question shaped this result
    via: tuple[str, ...] = ()  # pools consulted besides the record's own (fallback chains)


class PoolSource(Protocol):
    """Turns a pool-backed record set into concrete addresses for one client."""

    def select(self, entry: PoolRRset, client: Client) -> PoolResult: ...

    def client_key(self, source: str) -> int:
        """For answers that depend on the source address (DEPENDS_CLIENT): a key
        equal for all sources that get the same answer."""
        ...

    def subnet_key(self, address: IPv4Address | IPv6Address) -> int:
        """For answers that depend on the EDNS Client Subnet (DEPENDS_ECS): a key equal
        for all client subnets that get the same answer, ECS scope included."""
        ...


class Answer(NamedTuple):  # a tuple: one is built per full-path query, and cheaply
    rcode: int
    aa: bool
    answer: tuple[RRset, ...] = ()
    authority: tuple[RRset, ...] = ()
    additional: tuple[RRset, ...] = ()
    ecs_scope: int | None = None
    depends: int = 0
    pools: tuple[str, ...] = ()  # every pool whose decision shaped this answer


REFUSED_ANSWER = Answer(rcode=REFUSED, aa=False)


class _Builder:
    __slots__ = (
        "additional",
        "answer",
        "authority",
        "client",
        "depends",
        "ecs_scope",
        "pools",
        "servfail",
        "used",
    )

    def __init__(self, pools: PoolSource, client: Client) -> None:
        self.pools = pools
        self.client = client
        self.answer: list[RRset] = []
        self.authority: list[RRset] = []
        self.additional: list[RRset] = []
        self.ecs_scope: int | None = None
        self.servfail = False
        self.depends = 0
        self.used: tuple[str, ...] = ()

    def concrete(self, entry: Entry, owner: Name) -> RRset | None:
        """The RRset to put on the wire for `entry`, owned by `owner` (wildcards)."""
        if isinstance(entry, PoolRRset):
            result = self.pools.select(entry, self.client)
            self.depends |= result.depends
            self.used += (entry.pool, *result.via)
            if result.ecs_scope is not None:
                # The narrowest scope any steering decision depended on wins.
                self.ecs_scope = max(self.ecs_scope or 0, result.ecs_scope)
                self.depends |= DEPENDS_ECS
            if result.servfail:
                self.servfail = True
                return None
            rrset = result.rrset
            if rrset is None or not rrset.rdatas:
                return None
        else:
            rrset = entry
        if rrset.name != owner:
            rrset = RRset(owner, rrset.rtype, rrset.ttl, rrset.rdatas)
        return rrset

    def finish(self, rcode: int, aa: bool) -> Answer:
        if self.servfail:
            return Answer(
                rcode=SERVFAIL, aa=False, ecs_scope=self.ecs_scope, depends=self.depends, pools=self.used
            )
        return Answer(
            rcode=rcode,
            aa=aa,
            answer=tuple(self.answer),
            authority=tuple(self.authority),
            additional=tuple(self.additional),
            ecs_scope=self.ecs_scope,
            depends=self.depends,
            pools=self.used,
        )


def _lookup_node(zone: Zone, qname: Name) -> tuple[Node | None, bool]:
    """(node or None, whether the name exists) after wildcard processing.

    A wildcard's node is returned as is; its records are then owned by qname.
    """
    node = zone.nodes.get(qname)
    if node is not None:
        return node, True
    if qname in zone.empty_nonterminals:
        return None, True  # empty non-terminal: NODATA, not NXDOMAIN
    if zone.has_wildcards:
        wild = zone.nodes.get(("*", *zone.closest_encloser(qname)))
        if wild is not None:
            return wild, True
    return None, False


def _targets(rrset: RRset) -> list[Name]:
    names: list[Name] = []
    for rdata in rrset.rdatas:
        if isinstance(rdata, MX):
            names.append(rdata.exchange)
        elif isinstance(rdata, SRV):
            names.append(rdata.target)
        elif isinstance(rdata, Target) and rrset.rtype == RType.NS:
            names.append(rdata.name)
    return names


def _add_addresses(b: _Builder, zones: ZoneSet, rrsets: list[RRset], glue: bool) -> None:
    """Additional-section A/AAAA for NS, MX and SRV targets we serve.

    `glue` allows data below a delegation (referrals need it); otherwise data
    under a cut is not ours to hand out.
    """
    seen: set[Name] = set()
    for rrset in rrsets:
        for name in _targets(rrset):
            if name in seen:
                continue
            seen.add(name)
            zone = zones.find(name)
            if zone is None or (not glue and zone.find_cut(name) is not None):
                continue
            node = zone.nodes.get(name)
            if node is None:
                continue
            for rtype in (RType.A, RType.AAAA):
                entry = node.get(int(rtype))
                if entry is not None:
                    # A pool failing here must not spoil the main answer.
                    saved = b.servfail
                    rr = b.concrete(entry, name)
                    b.servfail = saved
                    if rr is not None:
                        b.additional.append(rr)


def resolve(qname: Name, qtype: int, zones: ZoneSet, pools: PoolSource, client: Client) -> Answer:
    """Answer an IN-class query. `qname` must already be lowercased."""
    zone = zones.find(qname)
    if zone is None:
        return REFUSED_ANSWER
    b = _Builder(pools, client)
    name = qname
    seen: set[Name] = set()
    for _ in range(MAX_CNAME_CHAIN):
        seen.add(name)
        cut = zone.find_cut(name)
        if cut is not None and not (cut == name and qtype == RType.DS):
            ns = zone.nodes[cut][int(RType.NS)]
            assert isinstance(ns, RRset)
            b.authority.append(ns)
            _add_addresses(b, zones, [ns], glue=True)
            # A CNAME that led below a delegation: our CNAME is authoritative, and the
            # referral tells the resolver where to follow (as Knot, NSD, PowerDNS do).
            return b.finish(NOERROR, bool(b.answer))

        node, exists = _lookup_node(zone, name)
        if not exists:
            b.authority.append(zone.negative_soa)
            return b.finish(NXDOMAIN, True)
        if node is None:
            b.authority.append(zone.negative_soa)
            return b.finish(NOERROR, True)

        cname = node.get(int(RType.CNAME))
        if cname is not None and qtype not in (RType.CNAME, RType.ANY):  # ANY: the CNAME alone (RFC 1034)
            rr = b.concrete(cname, name)
            assert rr is not None and isinstance(rr.rdatas[0], Target)
            b.answer.append(rr)
            target = rr.rdatas[0].name
            next_zone = zones.find(target)
            if next_zone is None or target in seen:
                return b.finish(NOERROR, True)
            name, zone = target, next_zone
            continue

        if qtype == RType.ANY:
            # RFC 8482: one RRset, never the whole node (no amplification).
            entries = list(node.values())
        else:
            entry = node.get(qtype)
            entries = [entry] if entry is not None else []
        for entry in entries:
            rr = b.concrete(entry, name)
            if rr is not None:
                b.answer.append(rr)
                if qtype in _WITH_TARGETS:
                    _add_addresses(b, zones, [rr], glue=False)
                break
        else:
            b.authority.append(zone.negative_soa)
        return b.finish(NOERROR, True)
    # Chain longer than we follow: hand back what we have; resolvers continue.
    return b.finish(NOERROR, True)
