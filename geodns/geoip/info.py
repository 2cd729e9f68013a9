"""What the databases say about one address, and distances (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True, slots=True)
class GeoInfo:
    country: str | None = None  # ISO 3166-1 alpha-2
    continent: str | None = None  # AF AN AS EU NA OC SA
    subdivisions: tuple[str, ...] = ()  # ISO 3166-2, most general first: ("US-CA",)
    asn: int | None = None
    asn_org: str | None = None
    location: tuple[float, float] | None = None  # (lat, lon)
    # The prefix length over which all of this holds: the longest of the databases'
    # networks for the address (each database's answer is the same across its own).
    prefix: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "continent": self.continent,
            "subdivisions": list(self.subdivisions),
            "asn": self.asn,
            "asn_org": self.asn_org,
            "location": None if self.location is None else {"lat": self.location[0], "lon": self.location[1]},
            "prefix": self.prefix,
        }


def from_records(
    city: Mapping[str, Any] | None, city_prefix: int, asn: Mapping[str, Any] | None, asn_prefix: int | None
) -> GeoInfo:
    """A GeoIP2/GeoLite2 City or Country record (and an ASN one), read defensively:
    a database may lack any field, or hold the wrong type in it."""
    city = city if isinstance(city, Mapping) else {}
    country = _code(city.get("country")) or _code(city.get("registered_country"))
    continent = _str(_get(city.get("continent"), "code"))
    subdivisions: tuple[str, ...] = ()
    if country is not None and isinstance(city.get("subdivisions"), list):
        subdivisions = tuple(
            f"{country}-{code}"
            for s in city["subdivisions"]
            if (code := _str(_get(s, "iso_code"))) is not None
        )
    location = None
    place = city.get("location")
    lat, lon = _get(place, "latitude"), _get(place, "longitude")
    if _number(lat) and _number(lon) and -90 <= lat <= 90 and -180 <= lon <= 180:
        location = (float(lat), float(lon))
    number = _get(asn, "autonomous_system_number") if isinstance(asn, Mapping) else None
    return GeoInfo(
        country=country,
        continent=continent,
        subdivisions=subdivisions,
        asn=number if isinstance(number, int) and not isinstance(number, bool) else None,
        asn_org=_str(_get(asn, "autonomous_system_organization")) if isinstance(asn, Mapping) else None,
        location=location,
        prefix=max(city_prefix, asn_prefix or 0),
    )


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(value: Any) -> str | None:
    code = _str(_get(value, "iso_code"))
    return code.upper() if code else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
