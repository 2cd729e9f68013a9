"""Route53 record sets as plain values (pure)."""

from __future__ import annotations

from dataclasses import dataclass


def normalize_name(name: str) -> str:
    """Route53 returns names lowercased, absolute, with octal escapes (\\052 for *)."""
    text = name if name.endswith(".") else name + "."
    return text.replace("\\052", "*").lower()


@dataclass(frozen=True, order=True)
class RecordKey:
    zone_id: str
    name: str
    rtype: str
    set_id: str | None


@dataclass(frozen=True)
class RecordSet:
    zone_id: str
    name: str  # normalized
    rtype: str
    set_id: str | None = None
    weight: int | None = None  # None: not a weighted record set
    ttl: int | None = None
    values: tuple[str, ...] = ()  # sorted
    routing: str | None = None  # another routing policy (failover, geo, latency...) or an alias

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.zone_id, self.name, self.rtype, self.set_id)

    def same_content(self, other: RecordSet) -> bool:
        return (self.weight, self.ttl, self.values) == (other.weight, other.ttl, other.values)

    def to_api(self) -> dict[str, object]:
        out: dict[str, object] = {
            "Name": self.name,
            "Type": self.rtype,
            "TTL": self.ttl,
            "ResourceRecords": [{"Value": v} for v in self.values],
        }
        if self.set_id is not None:
            out["SetIdentifier"] = self.set_id
            out["Weight"] = self.weight
        return out

    @classmethod
    def from_api(cls, zone_id: str, data: dict[str, object]) -> RecordSet:
        routing = None
        for key in (
            "Failover",
            "GeoLocation",
            "Region",
            "MultiValueAnswer",
            "AliasTarget",
            "CidrRoutingConfig",
            "GeoProximityLocation",
        ):
            if key in data:
                routing = key
        records = data.get("ResourceRecords") or []
        assert isinstance(records, list)
        weight = data.get("Weight")
        ttl = data.get("TTL")
        set_id = data.get("SetIdentifier")
        return cls(
            zone_id=zone_id,
            name=normalize_name(str(data["Name"])),
            rtype=str(data["Type"]),
            set_id=str(set_id) if set_id is not None else None,
            weight=int(str(weight)) if weight is not None else None,
            ttl=int(str(ttl)) if ttl is not None else None,
            values=tuple(sorted(str(r["Value"]) for r in records)),
            routing=routing,
        )
