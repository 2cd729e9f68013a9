"""Zone -> RFC 1035 master-file text (pure).

For ops who want to diff geodns's view of a zone against a legacy zone file,
and for the test that serves the same zone from Knot to compare answers.
Pool-backed records are written with the addresses `pools` gives them now.
"""

from __future__ import annotations

from geodns.dns.answer import Client, PoolSource
from geodns.zone.names import escape, to_text
from geodns.zone.zone import CAA, MX, SOA, SRV, TXT, Address, PoolRRset, RData, RType, Target, Zone


def _quote(data: bytes) -> str:
    return '"' + escape(data.decode("latin-1"), '"\\') + '"'


def rdata_text(rdata: RData) -> str:
    if isinstance(rdata, Address):
        return rdata.text
    if isinstance(rdata, Target):
        return to_text(rdata.name)
    if isinstance(rdata, MX):
        return f"{rdata.preference} {to_text(rdata.exchange)}"
    if isinstance(rdata, TXT):
        return " ".join(_quote(s) for s in rdata.strings)
    if isinstance(rdata, SRV):
        return f"{rdata.priority} {rdata.weight} {rdata.port} {to_text(rdata.target)}"
    if isinstance(rdata, CAA):
        return f"{rdata.flags} {rdata.tag} {_quote(rdata.value.encode())}"
    assert isinstance(rdata, SOA)
    return (
        f"{to_text(rdata.mname)} {to_text(rdata.rname)} {rdata.serial} {rdata.refresh} "
        f"{rdata.retry} {rdata.expire} {rdata.minimum}"
    )


def zone_text(zone: Zone, pools: PoolSource) -> str:
    lines = [
        f"$ORIGIN {to_text(zone.origin)}",
        f"{to_text(zone.origin)} {zone.soa.ttl} IN SOA {rdata_text(zone.soa.rdatas[0])}",
    ]
    for name in sorted(zone.nodes, key=lambda n: tuple(reversed(n))):
        for entry in zone.nodes[name].values():
            placeholder = Client("0.0.0.0")  # noqa: S104 - no real client: the default answer
            rrset = pools.select(entry, placeholder).rrset if isinstance(entry, PoolRRset) else entry
            if rrset is None or rrset.rtype == RType.SOA:
                continue
            type_name = RType(rrset.rtype).name
            for rdata in rrset.rdatas:
                lines.append(f"{to_text(name)} {rrset.ttl} IN {type_name} {rdata_text(rdata)}")
    return "\n".join(lines) + "\n"
