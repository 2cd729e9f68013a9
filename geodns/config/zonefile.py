"""One zone file (YAML) -> Zone, with every problem located (pure).

Enforces what a resolver depends on and a zone-file loader like Knot's
semantic checks would: NS at the apex, CNAME alone at its name (RFC 1034
3.6.2, RFC 2181 10.1), one TTL per RRset (RFC 2181 5.2), nothing but glue
below a delegation, wildcards only as the leftmost label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geodns.config import schemarec
from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    int_in,
    mapping,
    to_str,
    to_ttl,
    type_name,
    unknown,
)
from geodns.config.model import Pool
from geodns.config.rdata import SUPPORTED, parse_rdata, rtype_number, target_name
from geodns.config.recordlines import LineRecord
from geodns.config.yamlload import YList, YMap
from geodns.errors import Location
from geodns.zone.names import Name, NameSyntaxError, is_subdomain, parse_name, to_text
from geodns.zone.zone import SOA, Entry, PoolRRset, RData, RRset, RType, Zone, build_zone, new_rrset

DEFAULT_ZONE_TTL = 3600
_PLAIN_TYPES = frozenset({"A", "AAAA", "CNAME", "NS", "PTR", "TXT", "MX"})
SOA_DEFAULTS = {"refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300}
_u32 = int_in(0, 2**32 - 1)


@dataclass
class _Pending:
    """Values for one (name, type) gathered from possibly several YAML entries."""

    name: Name
    rtype: str
    ttl: int
    rec: YMap | LineRecord  # the record as read: `where` is built from it only for a problem
    rdatas: list[RData]
    pool: str | None = None

    @property
    def where(self) -> Location:
        return self.rec.loc


def _absolute_email(text: str) -> str:
    # "hostmaster@example.com" is how people think of it; DNS wants hostmaster.example.com.
    if "@" in text and text != "@":
        local, _, domain = text.partition("@")
        if "." in local:
            raise Invalid("a dot in the mailbox part of rname cannot be written here; use mailbox.domain.")
        return f"{local}.{domain.rstrip('.')}."
    return text


def _soa(ctx: Ctx, raw: Any, where: Location, origin: Name, ttl: int, serial: int) -> RRset | None:
    m = mapping(ctx, raw, where, "soa")
    if m is None:
        return None
    f = Fields(ctx, m, "soa")
    mname = f.get("mname", lambda v: target_name(v, origin), required=True)
    rname = f.get("rname", lambda v: target_name(_absolute_email(to_str(v)), origin), required=True)
    numbers = {"serial": f.get("serial", _u32, serial)}
    for key, default in SOA_DEFAULTS.items():
        numbers[key] = f.get(key, _u32, default)
    f.finish()
    if mname is None or rname is None or any(v is None for v in numbers.values()):
        return None
    soa = SOA(mname, rname, *(int(numbers[k] or 0) for k in ("serial", *SOA_DEFAULTS)))
    return RRset(origin, int(RType.SOA), ttl, (soa,))


def parse_zone(
    ctx: Ctx, doc: Any, filename: str, pools: Mapping[str, Pool], default_serial: int
) -> Zone | None:
    top = mapping(ctx, doc, Location(filename, 1, 1), "zone file")
    if top is None:
        return None
    f = Fields(ctx, top, "")

    def origin_conv(v: Any) -> Name:
        text = to_str(v)
        if not text.endswith("."):
            raise Invalid(f"origin must be absolute (end with a dot): {text!r}")
        try:
            return parse_name(text, None)
        except NameSyntaxError as exc:
            raise Invalid(str(exc)) from None

    origin = f.get("origin", origin_conv, required=True)
    ttl = f.get("ttl", to_ttl, DEFAULT_ZONE_TTL)
    soa_raw = f.raw("soa")
    if not f.has("soa"):
        ctx.error(top.loc, "zone: missing required key 'soa'")
    records_raw = f.raw("records")
    f.finish()
    if origin is None:
        return None
    if ttl is None:
        ttl = DEFAULT_ZONE_TTL  # its problem is reported; read on to report every other one
    soa = _soa(ctx, soa_raw, top.value_loc("soa"), origin, ttl, default_serial) if soa_raw else None

    pending: dict[tuple[Name, str], _Pending] = {}
    if records_raw is not None:
        records = mapping(ctx, records_raw, top.value_loc("records"), "records")
        if records is not None:
            seen: dict[Name, str] = {}
            fast = not schemarec.active()  # a recording wants every key asked for
            for key, value in records.items():
                if not (fast and _plain_entry(key, value, origin, ttl, pending, seen)):
                    whole = value.located() if value.__class__ is LineRecord else value  # all of it
                    _parse_name_entry(ctx, records, key, whole, origin, ttl, pools, pending, seen)
    _check_structure(ctx, origin, pending, top.loc)
    if soa is None:
        return None
    entries: list[Entry] = []
    for p in pending.values():
        if p.pool is not None:
            entries.append(PoolRRset(p.name, rtype_number(p.rtype), p.ttl, p.pool))
        else:
            entries.append(new_rrset(p.name, rtype_number(p.rtype), p.ttl, tuple(p.rdatas)))
    return build_zone(origin, soa, entries)


def _plain_entry(
    key: Any,
    value: Any,
    origin: Name,
    zone_ttl: int,
    pending: dict[tuple[Name, str], _Pending],
    seen: dict[Name, str],
) -> bool:
    """The shape most records of a big zone have, `name: {type: T, value: V}`, read
    without the general machinery (a third of a big zone's start-up went there).
    False when anything is not plain and right: the general reader then reads it
    and says what is wrong, so no problem is worded twice."""
    if key.__class__ is not str:
        return False
    if value.__class__ is LineRecord:
        rtype, raw = value.rtype, value.value
    elif value.__class__ is YMap and len(value) == 2:
        rtype, raw = value.get("type"), value.get("value")
    else:
        return False
    if rtype.__class__ is not str or raw.__class__ is not str:
        return False
    rtype = rtype.upper()
    if rtype not in _PLAIN_TYPES:
        return False
    try:
        name = target_name(key, origin)
        rdata = parse_rdata(rtype, raw, origin)
    except Invalid:
        return False
    # parse_name lowercased it: it is its own folded form (the general reader folds).
    if name in seen or not is_subdomain(name, origin) or (name, rtype) in pending:
        return False
    seen[name] = key
    pending[(name, rtype)] = _Pending(name, rtype, zone_ttl, value, [rdata])
    return True


def _parse_name_entry(
    ctx: Ctx,
    records: YMap,
    key: Any,
    value: Any,
    origin: Name,
    zone_ttl: int,
    pools: Mapping[str, Pool],
    pending: dict[tuple[Name, str], _Pending],
    seen: dict[Name, str],
) -> None:
    if not isinstance(key, str):
        ctx.error(records.key_loc(key), f"record name must be a string, got {type_name(key)}")
        return
    try:
        name = target_name(key, origin)  # refuses "www.example.com" in example.com. too
    except Invalid as exc:
        said = str(exc)
        ctx.error(
            records.key_loc(key), f"record name {said if said.startswith(repr(key)) else f'{key!r}: {said}'}"
        )
        return
    folded = tuple(label.lower() for label in name)
    if folded in seen:
        # DNS names ignore letter case: `mail` and `Mail` are one name, written twice.
        first = seen[folded]
        ctx.error(
            records.key_loc(key),
            f"record name {key!r} is the same name as {first!r} (line {records.key_loc(first).line}):"
            " DNS names ignore letter case; put their records under one key",
        )
        return
    seen[folded] = key
    if not is_subdomain(name, origin):
        ctx.error(records.key_loc(key), f"record name {key!r} is outside the zone {to_text(origin)}")
        return
    # Only a leftmost label that is exactly '*' is a wildcard (RFC 4592 2.1.1); an
    # asterisk anywhere else is an ordinary character: `host.*.sub` is a plain name.
    if isinstance(value, YList):
        items = [(v, value.item_loc(i)) for i, v in enumerate(value)]
    else:
        items = [(value, records.value_loc(key))]
    for item, where in items:
        rec = mapping(ctx, item, where, f"record {key!r}")
        if rec is not None:
            _parse_record(ctx, rec, key, name, origin, zone_ttl, pools, pending)


def _parse_record(
    ctx: Ctx,
    rec: YMap,
    key: str,
    name: Name,
    origin: Name,
    zone_ttl: int,
    pools: Mapping[str, Pool],
    pending: dict[tuple[Name, str], _Pending],
) -> None:
    path = f"records.{key}"
    f = Fields(ctx, rec, path)

    def type_conv(v: Any) -> str:
        text = to_str(v).upper()
        if text == "SOA":
            raise Invalid("the SOA record is set with the zone's 'soa:' key")
        if text not in SUPPORTED:
            raise Invalid(f"unsupported record type {v!r} (supported: {', '.join(SUPPORTED)})")
        return text

    rtype = f.get("type", type_conv, required=True)
    ttl = f.get("ttl", to_ttl)
    sources = [k for k in ("value", "values", "pool") if k in rec]
    raw_value, raw_values, pool = f.raw("value"), f.raw("values"), f.get("pool", to_str)
    f.finish()
    if rtype is None:
        return
    if len(sources) != 1:
        what = (
            "exactly one of 'value', 'values' or 'pool'"
            if rtype in ("A", "AAAA")
            else "exactly one of 'value' or 'values'"
        )
        ctx.error(
            rec.loc,
            f"{path}: {rtype} record needs {what}" + (f" (has {', '.join(sources)})" if sources else ""),
        )
        return

    if "pool" in sources:
        if rtype not in ("A", "AAAA"):
            f.error("pool", f"only A and AAAA records can be answered from a pool, not {rtype}")
            return
        if pool is None:
            return
        target = pools.get(pool)
        if target is None:
            f.error("pool", unknown("pool", pool, pools))
            return
        want_v6 = rtype == "AAAA"
        if not any(m.is_v6 == want_v6 for m in target.members):
            f.error("pool", f"pool {pool!r} has no IPv{6 if want_v6 else 4} members to answer {rtype}")
            return
        effective = ttl if ttl is not None else (target.ttl if target.ttl is not None else zone_ttl)
        _add(ctx, pending, _Pending(name, rtype, effective, rec, [], pool), path)
        return

    if "value" in sources:
        values = [(raw_value, f.where("value"))]
    elif isinstance(raw_values, YList) and raw_values:
        values = [(v, raw_values.item_loc(i)) for i, v in enumerate(raw_values)]
    else:
        f.error("values", f"expected a non-empty list, got {type_name(raw_values)}")
        return
    rdatas: list[RData] = []
    for raw, where in values:
        try:
            rdata = parse_rdata(rtype, raw, origin)
        except Invalid as exc:
            ctx.error(where, f"{path}: {exc}")
            continue
        if rdata in rdatas:
            ctx.error(where, f"{path}: duplicate {rtype} value {raw!r}")
            continue
        rdatas.append(rdata)
    if rdatas:
        _add(ctx, pending, _Pending(name, rtype, ttl if ttl is not None else zone_ttl, rec, rdatas), path)


def _add(ctx: Ctx, pending: dict[tuple[Name, str], _Pending], new: _Pending, path: str) -> None:
    old = pending.get((new.name, new.rtype))
    if old is None:
        pending[(new.name, new.rtype)] = new
        return
    if old.pool is not None or new.pool is not None:
        ctx.error(
            new.where,
            f"{path}: {new.rtype} is already defined at line {old.where.line}; "
            "a pool-backed record cannot be mixed with other records of its type",
        )
        return
    if old.ttl != new.ttl:
        ctx.error(
            new.where,
            f"{path}: TTL {new.ttl} differs from the {new.rtype} records at line "
            f"{old.where.line} (TTL {old.ttl}); one RRset has one TTL (RFC 2181 5.2)",
        )
        return
    for rdata in new.rdatas:
        if rdata in old.rdatas:
            ctx.error(new.where, f"{path}: duplicate {new.rtype} value already at line {old.where.line}")
        else:
            old.rdatas.append(rdata)


def _check_structure(
    ctx: Ctx, origin: Name, pending: dict[tuple[Name, str], _Pending], zone_loc: Location
) -> None:
    by_name: dict[Name, dict[str, _Pending]] = {}
    for (name, rtype), p in pending.items():
        by_name.setdefault(name, {})[rtype] = p
    if "NS" not in by_name.get(origin, {}):
        ctx.error(zone_loc, f"zone {to_text(origin)} has no NS records at the apex ('@')")
    cuts = {name for name, types in by_name.items() if name != origin and "NS" in types}
    for name, types in by_name.items():
        cname = types.get("CNAME")
        if cname is not None:
            if name == origin:
                ctx.error(
                    cname.where, f"{to_text(name)}: CNAME is not allowed at the zone apex (it has SOA and NS)"
                )
            others = [p for t, p in types.items() if t != "CNAME"]
            if others and name != origin:
                ctx.error(
                    cname.where,
                    f"{to_text(name)}: CNAME cannot coexist with other records "
                    f"({others[0].rtype} at line {others[0].where.line}) (RFC 1034 3.6.2)",
                )
            if len(cname.rdatas) > 1:
                ctx.error(cname.where, f"{to_text(name)}: a name can have only one CNAME")
        if name and name[0] == "*" and "NS" in types:
            ctx.error(
                types["NS"].where, f"{to_text(name)}: a wildcard cannot be delegated (NS at a '*' name)"
            )
        if name in cuts:
            for rtype, p in types.items():
                if rtype not in ("NS", "A", "AAAA"):
                    ctx.error(
                        p.where,
                        f"{to_text(name)}: {rtype} is not allowed at a delegation point "
                        "(only NS and glue A/AAAA)",
                    )
        for k in range(len(origin) + 1, len(name)):
            above = name[-k:]
            if above in cuts:
                for rtype, p in types.items():
                    if rtype not in ("A", "AAAA"):
                        ctx.error(
                            p.where,
                            f"{to_text(name)}: {rtype} is hidden below the delegation at "
                            f"{to_text(above)} (only glue A/AAAA may be there)",
                        )
                break
