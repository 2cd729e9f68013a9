"""Desired vs actual -> changes, batches and the safety check (pure).

Only record sets whose SetIdentifier starts with `<owner>-` are ours. A name
and type that also holds anything else (a foreign weighted set, a simple
record, another routing policy, an alias) is refused: Route53 cannot mix
them, and overwriting someone else's record is never our call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from geodns.route53.model import RecordKey, RecordSet

MAX_BATCH_RECORDS = 999  # Route53 allows 1,000 ResourceRecord elements per request
MAX_BATCH_CHARS = 31_999  # and 32,000 characters of values; we stay strictly below both
MIN_OWNED_FOR_SAFETY = 10  # like octodns: tiny zones may change wholesale


@dataclass(frozen=True)
class Change:
    action: str  # CREATE | UPSERT | DELETE
    record: RecordSet  # the new record (the current one for DELETE)
    old: RecordSet | None = None
    reason: str = ""

    @property
    def cost(self) -> tuple[int, int]:
        """(records, characters) toward the batch limits; UPSERT counts twice."""
        factor = 2 if self.action == "UPSERT" else 1
        return factor * max(1, len(self.record.values)), factor * sum(len(v) for v in self.record.values)

    def line(self) -> str:
        r = self.record
        head = f"{r.name} {r.rtype} {r.set_id}"
        why = f" ({self.reason})" if self.reason else ""
        if self.action == "CREATE":
            return f"+ {head} weight {r.weight} ttl {r.ttl} values {', '.join(r.values)}{why}"
        if self.action == "DELETE":
            return f"- {head} weight {r.weight} values {', '.join(r.values)} (no longer configured)"
        assert self.old is not None
        parts = []
        if self.old.weight != r.weight:
            parts.append(f"weight {self.old.weight} -> {r.weight}")
        if self.old.values != r.values:
            parts.append(f"values {', '.join(self.old.values)} -> {', '.join(r.values)}")
        if self.old.ttl != r.ttl:
            parts.append(f"ttl {self.old.ttl} -> {r.ttl}")
        return f"~ {head} {'; '.join(parts)}{why}"


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...] = ()
    conflicts: tuple[str, ...] = ()  # name/type refused because others' records live there
    refused: tuple[Change, ...] = ()  # config-driven changes held back by the safety check
    owned: int = 0  # record sets of ours found in Route53
    notes: tuple[str, ...] = field(default=())

    @property
    def in_sync(self) -> bool:
        return not self.changes and not self.refused


def owned_by(record: RecordSet, owner: str) -> bool:
    return record.set_id is not None and record.set_id.startswith(owner + "-") and record.routing is None


def diff(
    desired: Sequence[RecordSet],
    actual: Iterable[RecordSet],
    owner: str,
    why: Mapping[RecordKey, str] | None = None,
) -> Plan:
    actual = list(actual)
    why = why or {}
    wanted_names = {(r.zone_id, r.name, r.rtype) for r in desired}
    conflicts: dict[tuple[str, str, str], str] = {}
    for r in actual:
        slot = (r.zone_id, r.name, r.rtype)
        if slot in wanted_names and not owned_by(r, owner):
            what = (
                f"a {r.routing} record"
                if r.routing
                else f"weighted set {r.set_id!r}"
                if r.set_id
                else "a simple (non-weighted) record"
            )
            conflicts.setdefault(
                slot,
                f"{r.name} {r.rtype} in {r.zone_id} also holds {what} not owned by "
                f"{owner!r}; refusing to touch it (Route53 cannot mix them)",
            )
    ours = {r.key: r for r in actual if owned_by(r, owner)}
    changes: list[Change] = []
    for record in desired:
        if (record.zone_id, record.name, record.rtype) in conflicts:
            continue
        current = ours.get(record.key)
        if current is None:
            changes.append(Change("CREATE", record, None, why.get(record.key, "")))
        elif not current.same_content(record):
            changes.append(Change("UPSERT", record, current, why.get(record.key, "")))
    desired_keys = {r.key for r in desired}
    for key, current in ours.items():
        if key not in desired_keys and (current.zone_id, current.name, current.rtype) not in conflicts:
            changes.append(Change("DELETE", current))
    return Plan(
        tuple(sorted(changes, key=lambda c: (c.record.key, c.action))),
        tuple(conflicts.values()),
        owned=len(ours),
    )


def apply_safety(plan: Plan, max_fraction: float, force: bool) -> Plan:
    """Hold back config-driven creates and deletes beyond `max_fraction` of what
    we own. Health only ever moves weights and values (UPSERT): never held."""
    structural = [c for c in plan.changes if c.action in ("CREATE", "DELETE")]
    if force or plan.owned < MIN_OWNED_FOR_SAFETY or len(structural) <= max_fraction * plan.owned:
        return plan
    note = (
        f"{len(structural)} creates/deletes would touch more than {max_fraction:.0%} of the "
        f"{plan.owned} owned record sets; held back (use --force if this is intended)"
    )
    kept = tuple(c for c in plan.changes if c.action == "UPSERT")
    return Plan(kept, plan.conflicts, tuple(structural), plan.owned, (*plan.notes, note))


def batches(changes: Sequence[Change]) -> dict[str, list[list[Change]]]:
    """Per hosted zone, change batches below the record and character limits.

    DELETEs go first so that a name moving between owners' sets never
    momentarily exceeds a limit; each batch is applied atomically by Route53."""
    by_zone: dict[str, list[Change]] = {}
    for change in sorted(changes, key=lambda c: (c.action != "DELETE", c.record.key)):
        by_zone.setdefault(change.record.zone_id, []).append(change)
    out: dict[str, list[list[Change]]] = {}
    for zone, zone_changes in by_zone.items():
        current: list[Change] = []
        records = chars = 0
        out[zone] = []
        for change in zone_changes:
            n, c = change.cost
            if current and (records + n > MAX_BATCH_RECORDS or chars + c > MAX_BATCH_CHARS):
                out[zone].append(current)
                current, records, chars = [], 0, 0
            current.append(change)
            records += n
            chars += c
        if current:
            out[zone].append(current)
    return out


def to_change_batch(changes: Sequence[Change], comment: str) -> dict[str, object]:
    return {
        "Comment": comment[:256],
        "Changes": [{"Action": c.action, "ResourceRecordSet": c.record.to_api()} for c in changes],
    }
