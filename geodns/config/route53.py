"""The `route53:` section: which pools are pushed into which hosted zones (pure)."""

from __future__ import annotations

import re
from typing import Any

from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    each_mapping,
    mapping,
    to_duration,
    to_fraction,
    to_str,
    to_ttl,
    type_name,
    unknown,
)
from geodns.config.model import Pool, Route53Config, Route53Record
from geodns.config.schemarec import accepts
from geodns.config.yamlload import YList
from geodns.errors import Location
from geodns.zone.names import Name, NameSyntaxError, parse_name, to_text


@accepts({"type": "string", "pattern": "\\.$"})
def _abs_name(value: Any) -> Name:
    text = to_str(value)
    if not text.endswith("."):
        raise Invalid(f"{text!r} must be an absolute name ending with a dot")
    try:
        return parse_name(text, None)
    except NameSyntaxError as exc:
        raise Invalid(str(exc)) from None


def parse_route53(ctx: Ctx, raw: Any, where: Location, pools: dict[str, Pool]) -> Route53Config | None:
    m = mapping(ctx, raw, where, "route53", allow_null=True)
    if m is None:
        return None
    f = Fields(ctx, m, "route53")
    region = f.get("region", to_str, "us-east-1")
    endpoint = None if m.get("endpoint_url") is None else f.get("endpoint_url", to_str)
    f.has("endpoint_url")
    raw_records = f.raw("records")
    f.has("records")
    d = Route53Config()
    owner = f.get("owner", _owner, d.owner)
    interval = f.get("reconcile_interval", to_duration, d.reconcile_interval)
    debounce = f.get("debounce", to_duration, d.debounce)
    fraction = f.get("max_change_fraction", to_fraction, d.max_change_fraction)
    rate = f.get("requests_per_second", _rate, d.requests_per_second)
    unhealthy = f.get("unready_after", _rounds, d.unready_after)
    f.finish()
    records = []
    if raw_records is not None and not isinstance(raw_records, YList):
        f.error("records", f"expected a list, got {type_name(raw_records)}")
    listed = each_mapping(ctx, raw_records, "route53.records") if isinstance(raw_records, YList) else ()
    for _path, _m, rf in listed:
        name = rf.get("name", _abs_name, required=True)
        zone_id = rf.get("hosted_zone_id", to_str, required=True)
        pool = rf.get("pool", to_str, required=True)
        ttl = rf.get("ttl", to_ttl, 60)
        rf.finish()
        if pool is not None and pool not in pools:
            rf.error("pool", unknown("pool", pool, pools))
            continue
        if name is not None and zone_id is not None and pool is not None:
            records.append(Route53Record(name, zone_id, pool, ttl if ttl is not None else 60))
    seen: dict[tuple[str, Name], int] = {}
    for i, record in enumerate(records):
        key = (record.hosted_zone_id, record.name)
        if key in seen:
            ctx.error(
                raw_records.item_loc(i),
                f"route53.records[{i}]: {to_text(record.name)} in "
                f"{record.hosted_zone_id} is already synced by records[{seen[key]}]",
            )
        seen.setdefault(key, i)
    return Route53Config(
        region=region or d.region,
        endpoint_url=endpoint,
        records=tuple(records),
        owner=owner or d.owner,
        reconcile_interval=interval or d.reconcile_interval,
        debounce=debounce or d.debounce,
        max_change_fraction=d.max_change_fraction if fraction is None else fraction,
        requests_per_second=rate or d.requests_per_second,
        unready_after=unhealthy or d.unready_after,
    )


@accepts({"type": "integer", "minimum": 1, "maximum": 1000})
def _rounds(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000:
        return value
    raise Invalid(f"expected a number of failed rounds from 1 to 1000, got {value!r}")


@accepts({"type": "string", "pattern": "^[A-Za-z0-9_.]{1,40}$"})
def _owner(value: Any) -> str:
    text = to_str(value)
    if not re.fullmatch(r"[A-Za-z0-9_.]{1,40}", text):
        raise Invalid(f"owner {text!r} must be 1-40 letters, digits, '_' or '.' (it prefixes SetIdentifiers)")
    return text


@accepts({"type": "number", "exclusiveMinimum": 0, "maximum": 100})
def _rate(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 100:
        return float(value)
    raise Invalid(f"expected requests per second in (0, 100], got {value!r}")
