"""The `topology:` rules of geo pools and the `geoip:` section (pure but for
opening the databases, which a config that names them must be able to use).

A rule matches by `match` (a subnet), `country`, `continent`, `subdivision`
(ISO 3166-2) or `asn`, or is the `default`; it prefers a list of datacenters or
the `nearest` ones. Codes are checked against the ISO lists: `country: UK` is an
error that says "did you mean GB", not a rule that never matches."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    beside,
    did_you_mean,
    each_mapping,
    mapping,
    to_bool,
    to_duration,
    to_network,
    to_str,
    type_name,
    unknown,
)
from geodns.config.model import Datacenter, GeoIPConfig, TopologyRule
from geodns.config.schemarec import accepts
from geodns.config.yamlload import YList
from geodns.errors import Location
from geodns.geoip.database import GeoIPError, open_reader
from geodns.geoip.isocodes import ALIASES, CONTINENTS, COUNTRIES, SUBDIVISIONS

SELECTORS = ("match", "country", "continent", "subdivision", "asn", "default")


def parse_geoip(ctx: Ctx, raw: Any, where: Location, base: Path) -> GeoIPConfig | None:
    m = mapping(ctx, raw, where, "geoip", allow_null=True)
    if m is None:
        return None
    f = Fields(ctx, m, "geoip")
    database = f.get("database", _database(base), required=True)
    asn_database = f.get("asn_database", _database(base))
    watch = f.get("watch_interval", to_duration, GeoIPConfig.watch_interval)
    f.finish()
    if database is None:
        return None
    return GeoIPConfig(database, asn_database, watch or GeoIPConfig.watch_interval)


def _database(base: Path) -> Any:
    @accepts({"type": "string", "minLength": 1})
    def conv(value: Any) -> Path:
        path = beside(base, to_str(value))
        try:
            open_reader(path)  # missing, unreadable or corrupt: an error here, not at the first query
        except GeoIPError as exc:
            raise Invalid(str(exc)) from None
        return path

    return conv


@accepts({"type": "string", "pattern": "^[A-Za-z]{2}$"})
def to_country(value: Any) -> str:
    code = to_str(value).upper()
    if code not in COUNTRIES:
        hint = f" (did you mean {ALIASES[code]!r}?)" if code in ALIASES else did_you_mean(code, COUNTRIES)
        raise Invalid(f"{value!r} is not an ISO 3166-1 country code{hint}")
    return code


@accepts({"enum": sorted(CONTINENTS)})
def to_continent(value: Any) -> str:
    code = to_str(value).upper()
    if code not in CONTINENTS:
        raise Invalid(f"{value!r} is not a continent code ({', '.join(sorted(CONTINENTS))})")
    return code


@accepts({"type": "string", "pattern": "^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$"})
def to_subdivision(value: Any) -> str:
    code = to_str(value).upper()
    if code not in SUBDIVISIONS:
        country = code.split("-", 1)[0]
        same = [s for s in SUBDIVISIONS if s.startswith(country + "-")]
        raise Invalid(f"{value!r} is not an ISO 3166-2 subdivision code{did_you_mean(code, same)}")
    return code


@accepts({"type": "integer", "minimum": 1, "maximum": 4294967295})
def to_asn(value: Any) -> int:
    if isinstance(value, str) and re.fullmatch(r"(?i)AS\d+", value):
        value = int(value[2:])
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 4294967295:
        return value
    raise Invalid(f"expected an AS number (64500 or AS64500), got {value!r}")


@accepts({"anyOf": [{"const": "nearest"}, {"type": "array", "items": {"type": "string", "minLength": 1}}]})
def _prefer(value: Any) -> tuple[str, ...]:
    if value == "nearest":
        return ("nearest",)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise Invalid(f"expected a list of datacenters or the word nearest, got {type_name(value)}")


def parse_topology(
    ctx: Ctx, raw: Any, where: Location, dcs: dict[str, Datacenter], geoip: GeoIPConfig | None
) -> tuple[TopologyRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, YList):
        ctx.error(where, f"topology: expected a list of rules, got {type_name(raw)}")
        return ()
    rules: list[TopologyRule] = []
    for path, m, f in each_mapping(ctx, raw, "topology"):
        match = f.get("match", to_network)
        countries = f.get_list("country", to_country, allow_scalar=True)
        continents = f.get_list("continent", to_continent, allow_scalar=True)
        subdivisions = f.get_list("subdivision", to_subdivision, allow_scalar=True)
        asns = f.get_list("asn", to_asn, allow_scalar=True)
        default = f.get("default", to_bool, False)
        prefer = f.get("prefer", _prefer, required=True)
        f.finish()
        chosen = [k for k in SELECTORS if k in m and (k != "default" or default)]
        if len(chosen) != 1:
            got = ", ".join(chosen) or "none"
            ctx.error(m.loc, f"{path}: give exactly one of {', '.join(SELECTORS)} (got {got})")
            continue
        if chosen[0] not in ("match", "default") and geoip is None:
            f.error(chosen[0], "needs geoip.database (a MaxMind DB file) to look clients up")
        if chosen[0] == "asn" and geoip is not None and geoip.asn_database is None:
            f.error("asn", "needs geoip.asn_database (e.g. GeoLite2-ASN.mmdb)")
        if default and any(r.default for r in rules):
            f.error("default", "only one rule can be the default")
        if prefer is None:
            continue
        nearest = prefer == ("nearest",)
        if nearest:
            if geoip is None:
                f.error("prefer", "nearest needs geoip.database (the clients' coordinates)")
            unplaced = sorted(name for name, dc in dcs.items() if dc.location is None)
            if unplaced:
                f.error(
                    "prefer", f"nearest needs every datacenter's location; none for: {', '.join(unplaced)}"
                )
        for dc in () if nearest else prefer:
            if dc not in dcs:
                f.error("prefer", unknown("datacenter", dc, dcs))
        rules.append(
            TopologyRule(
                match,
                () if nearest else prefer,
                countries=frozenset(countries or ()),
                continents=frozenset(continents or ()),
                subdivisions=frozenset(subdivisions or ()),
                asns=frozenset(asns or ()),
                default=bool(default),
                nearest=nearest,
            )
        )
    return tuple(rules)


def parse_location(f: Fields) -> tuple[float, float] | None:
    """`location: {lat: 48.86, lon: 2.35}` of a datacenter."""
    raw = f.raw("location")
    if raw is None:
        return None
    m = mapping(f.ctx, raw, f.where("location"), f.label("location"))
    if m is None:
        return None
    loc = Fields(f.ctx, m, f.label("location"))
    lat = loc.get("lat", _degrees(90), required=True)
    lon = loc.get("lon", _degrees(180), required=True)
    loc.finish()
    return (lat, lon) if lat is not None and lon is not None else None


def _degrees(limit: int) -> Any:
    @accepts({"type": "number", "minimum": -limit, "maximum": limit})
    def conv(value: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool) and -limit <= value <= limit:
            return float(value)
        raise Invalid(f"expected degrees from {-limit} to {limit}, got {value!r}")

    return conv
