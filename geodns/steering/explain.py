"""`geodns explain`: why a name answers what it answers (pure).

Resolves the question the way a query would, recording every pool decision on
the way, and renders the rule matched, the pool and its policy, each member's
real and effective state, the answer, its TTL and the ECS scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from geodns.config.model import Config
from geodns.dns.answer import Client, PoolResult, resolve
from geodns.dns.zonetext import rdata_text
from geodns.health.health import ProbeKey, probe_key
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.geochoice import Geo, GeoChoice
from geodns.steering.policy import Decision, PolicySource
from geodns.zone.names import parse_name, to_text
from geodns.zone.zone import PoolRRset, RType

RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


@dataclass
class _Recording:
    source: PolicySource
    seen: list[tuple[PoolRRset, Decision, PoolResult]] = field(default_factory=list)

    def client_key(self, source: str) -> int:
        return self.source.client_key(source)

    def subnet_key(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
        return self.source.subnet_key(address)

    def select(self, entry: PoolRRset, client: Client) -> PoolResult:
        result = self.source.select(entry, client)
        self.seen.append((entry, self.source.decision(entry.pool, entry.rtype == RType.AAAA, client), result))
        return result


def parse_ecs_arg(text: str) -> tuple[str, int]:
    net = ipaddress.ip_network(text, strict=False)
    return str(net.network_address), net.prefixlen


def explain(
    config: Config,
    snapshot: HealthSnapshot,
    name: str,
    qtype: str,
    client: str,
    ecs: str | None = None,
    geo: Geo | None = None,
) -> dict[str, Any]:
    qname = parse_name(name if name.endswith(".") else name + ".", None)
    rtype = int(RType[qtype.upper()])
    who = Client(client, None, client)
    if ecs:
        address, prefix = parse_ecs_arg(ecs)
        who = Client(address, prefix, client)
    recording = _Recording(PolicySource(config, snapshot, geo=geo))
    answer = resolve(qname, rtype, config.zones, recording, who)
    pools = []
    for entry, decision, result in recording.seen:
        pools.append(_decision_json(entry, decision, result))
    return {
        "question": {"name": to_text(qname), "type": qtype.upper(), "client": client, "ecs": ecs},
        "snapshot_version": snapshot.version,
        "rcode": RCODES.get(answer.rcode, str(answer.rcode)),
        "authoritative": answer.aa,
        "answer": [
            f"{to_text(rr.name)} {rr.ttl} IN {RType(rr.rtype).name} {rdata_text(rd)}"
            for rr in answer.answer
            for rd in rr.rdatas
        ],
        "ecs_scope": answer.ecs_scope,
        "pools": pools,
    }


def _decision_json(entry: PoolRRset, d: Decision, result: PoolResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "record": f"{to_text(entry.name)} {RType(entry.rtype).name}",
        "pool": d.pool.name,
        "policy": d.pool.policy,
        "rule": None if d.rule is None else {"rule": d.rule.describe(), "prefer": list(d.rule.prefer)},
        "geo": _geo_json(d.choice),
        "preference": list(d.preference),
        "members": [
            {
                "address": v.member.address,
                "dc": v.member.dc,
                "weight": v.member.weight,
                "state": str(v.effective),
                "real_state": str(v.real),
                "forced_by": v.forced_by.target if v.forced_by else None,
            }
            for v in d.members
        ],
        "chosen_dc": d.chosen_dc,
        "fallback": d.fallback,
        "degraded": d.degraded,
        "notes": list(d.notes),
        "ttl": result.rrset.ttl if result.rrset else None,
        "ttl_rule": _ttl_rule(entry, d, result),
        "ecs_scope": result.ecs_scope,
        "servfail": result.servfail,
    }
    if d.via is not None:
        out["via"] = _decision_json(entry, d.via, result)
    return out


def _ttl_rule(entry: PoolRRset, d: Decision, result: PoolResult) -> str | None:
    """Which rule gave the answer its TTL, in words."""
    if result.rrset is None:
        return None
    pool = d.pool
    if result.rrset.ttl < entry.ttl:
        return f"pool {pool.name}'s degraded_ttl ({result.rrset.ttl}s, not {entry.ttl}s: a member is not up)"
    if pool.ttl is not None and entry.ttl == pool.ttl:
        return f"pool {pool.name}'s ttl ({entry.ttl}s)"
    return f"the record's ttl, or the zone's when the record sets none ({entry.ttl}s)"


def _geo_json(choice: GeoChoice | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    return {
        "database": choice.info.to_json() if choice.info is not None else None,
        "distances_km": {name: round(km) for name, km in choice.distances},
        "scope": choice.scope,
    }


def _render_geo(geo: dict[str, Any] | None, indent: str) -> list[str]:
    """What the GeoIP databases say of the client, and how far each datacenter is."""
    if geo is None:
        return []
    lines = []
    db = geo["database"]
    if db is not None:
        lines.append(f"{indent}  GeoIP: {geo_line(db)}")
    if geo["distances_km"]:
        lines.append(
            f"{indent}  distance: " + ", ".join(f"{dc} {km:,} km" for dc, km in geo["distances_km"].items())
        )
    return lines


def geo_line(db: dict[str, Any]) -> str:
    """'country FR, continent EU, at 43.60, 1.44 (database network /24)'."""
    where = db["location"]
    parts = [
        f"country {db['country']}" if db["country"] else "",
        f"continent {db['continent']}" if db["continent"] else "",
        f"subdivision {'/'.join(db['subdivisions'])}" if db["subdivisions"] else "",
        (f"AS{db['asn']}" + (f" ({db['asn_org']})" if db["asn_org"] else "")) if db["asn"] else "",
        f"at {where['lat']:.2f}, {where['lon']:.2f}" if where else "no coordinates",
    ]
    said = ", ".join(p for p in parts if p)
    return f"{said or 'not in the database'} (database network /{db['prefix']})"


def add_votes(doc: dict[str, Any], config: Config, why: Callable[[ProbeKey], str]) -> None:
    """With peers: each member's line says how the vantages voted ("3 of 3 vantages say
    down (par: HTTP 503; ...)")."""

    def walk(p: dict[str, Any]) -> None:
        pool = config.pools.get(p["pool"])
        if pool is not None:
            by_address = {m.address: m for m in pool.members}
            for m in p["members"]:
                member = by_address.get(m["address"])
                key = probe_key(pool, member, config.checks) if member is not None else None
                if key is not None:
                    m["votes"] = why(key)
        if "via" in p:
            walk(p["via"])

    for p in doc["pools"]:
        walk(p)


def render(doc: dict[str, Any]) -> str:
    q = doc["question"]
    lines = [
        f"{q['name']} {q['type']} asked by {q['client']}" + (f" with ECS {q['ecs']}" if q["ecs"] else "")
    ]
    if doc.get("offline"):
        lines.append(
            "offline what-if: no probe ran; every member is taken as up unless --down says otherwise"
        )
    for p in doc["pools"]:
        lines += _render_pool(p, "", offline=bool(doc.get("offline")))
    lines.append(f"answer ({doc['rcode']}{', authoritative' if doc['authoritative'] else ''}):")
    lines += [f"  {rr}" for rr in doc["answer"]] or ["  (no records)"]
    if doc["ecs_scope"] is not None:
        lines.append(f"ECS scope: /{doc['ecs_scope']}")
    lines.append(f"(health snapshot version {doc['snapshot_version']})")
    return "\n".join(lines) + "\n"


def _render_pool(p: dict[str, Any], indent: str, *, offline: bool = False) -> list[str]:
    lines = [f"{indent}{p['record']} is answered from pool {p['pool']} (policy {p['policy']})"]
    lines += _render_geo(p.get("geo"), indent)
    if p["rule"]:
        lines.append(f"{indent}  topology rule {p['rule']['rule']}")
    elif p["policy"] == "geo":
        lines.append(f"{indent}  no topology rule matched: the pool's own order")
    lines.append(f"{indent}  datacenter order: {', '.join(p['preference'])}")
    for m in p["members"]:
        if offline:
            forced = f" (what-if: {m['forced_by']})" if m["forced_by"] else " (assumed: not probed)"
        elif m["forced_by"]:
            forced = f" (forced by {m['forced_by']}; probes say {m['real_state']})"
        else:
            forced = ""
        lines.append(
            f"{indent}  - {m['address']:<20} {m['dc']:<8} weight {m['weight']:<4} {m['state']}{forced}"
        )
        if m.get("votes"):
            lines.append(f"{indent}      {m['state']}: {m['votes']}")
    if p["chosen_dc"]:
        lines.append(f"{indent}  chosen datacenter: {p['chosen_dc']}")
    if p["fallback"]:
        what = {
            "all": f"answering all {len(p['members'])} members",
            "empty": "answering no address (NODATA)",
            "servfail": "answering SERVFAIL",
        }.get(p["fallback"], f"answering from {p['fallback']}")
        lines.append(f"{indent}  FAILING OPEN: no member is up, {what} (fallback {p['fallback']})")
    lines += [f"{indent}  note: {n}" for n in p["notes"]]
    if p.get("ttl_rule"):
        lines.append(f"{indent}  TTL {p['ttl']}: {p['ttl_rule']}")
    if "via" in p:
        lines += _render_pool(p["via"], indent + "  ", offline=offline)
    return lines
