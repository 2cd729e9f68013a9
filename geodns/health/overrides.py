"""Operator overrides (drains): a member, a datacenter or a whole pool forced
down (or up) with a reason and an optional expiry (pure data and matching).

The forced state lives beside the real one: health keeps being probed, both
are shown, and removing the override hands control back to the probes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from geodns.config.model import Config, Member, Pool
from geodns.health.health import Status
from geodns.timefmt import iso

KINDS = ("member", "dc", "pool")
_SPECIFICITY = {"member": 3, "pool": 2, "dc": 1}


class OverrideError(ValueError):
    """A request for an override that cannot be applied, said for a person."""


@dataclass(frozen=True, slots=True)
class Override:
    kind: str  # member | dc | pool
    name: str
    state: Status  # UP or DOWN
    reason: str
    created: float
    expires: float | None = None
    by: str = ""  # who asked: "ops@host" from the CLI, else the API client's address

    @property
    def target(self) -> str:
        return f"{self.kind}={self.name}"

    def applies(self, pool: Pool, member: Member) -> bool:
        if self.kind == "member":
            return member.address == self.name
        if self.kind == "dc":
            return member.dc == self.name
        return pool.name == self.name

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "state": str(self.state),
            "reason": self.reason,
            "created": self.created,
            "expires": self.expires,
            "by": self.by,
        }

    @classmethod
    def from_json(cls, data: Any) -> Override:
        """One saved override; OverrideError says what is wrong with it. Every value
        is checked, so nothing in a file can reach the code that uses it."""
        if not isinstance(data, dict):
            raise OverrideError(f"expected an object, got {type(data).__name__}")
        target = data.get("target")
        if not isinstance(target, str):
            raise OverrideError("no target")
        kind, name = parse_target(target)
        state = data.get("state")
        if state not in ("up", "down"):
            raise OverrideError(f"state must be up or down, not {state!r}")
        reason = data.get("reason", "")
        if not isinstance(reason, str):
            raise OverrideError("reason must be a string")
        expires = data.get("expires")
        by = data.get("by", "")
        if not isinstance(by, str) or len(by) > MAX_BY:
            raise OverrideError(f"by must be a string of at most {MAX_BY} characters")
        return cls(
            kind,
            name,
            Status(state),
            reason,
            _timestamp(data.get("created"), "created"),
            None if expires is None else _timestamp(expires, "expires"),
            by,
        )


MAX_BY = 200
LATEST_TIME = 32503680000.0  # 3000-01-01: any later time in a file is a corruption


def _timestamp(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= LATEST_TIME:
        raise OverrideError(f"{field} must be a Unix time between 1970 and 3000, not {value!r}")
    return float(value)  # NaN fails the range test above


def describe_override(o: Override) -> str:
    until = f", until {iso(o.expires)}" if o.expires is not None else ""
    who = f" (by {o.by})" if o.by else ""
    return f"forced {o.state} by {o.target}: {o.reason or 'no reason given'}{until}{who}"


def parse_target(text: str) -> tuple[str, str]:
    """'dc=par', 'pool=web', 'member=192.0.2.10' -> (kind, name)."""
    kind, sep, name = text.partition("=")
    if not sep or kind not in KINDS or not name:
        raise OverrideError(f"bad target {text!r}: write dc=NAME, pool=NAME or member=ADDRESS")
    if kind == "member":
        try:
            name = ipaddress.ip_address(name).compressed
        except ValueError:
            raise OverrideError(f"bad target {text!r}: {name!r} is not an IP address") from None
    return kind, name


def check_target(config: Config, kind: str, name: str) -> None:
    """Refuse a target that matches nothing: a typo must not look like a drain."""
    if kind == "dc" and name not in {d.name for d in config.datacenters}:
        known = ", ".join(d.name for d in config.datacenters)
        raise OverrideError(f"no datacenter {name!r} (datacenters: {known})")
    if kind == "pool" and name not in config.pools:
        raise OverrideError(f"no pool {name!r} (pools: {', '.join(config.pools)})")
    if kind == "member" and not any(m.address == name for p in config.pools.values() for m in p.members):
        raise OverrideError(f"no pool member has the address {name}")


def forced(overrides: Iterable[Override], pool: Pool, member: Member) -> Override | None:
    """The override deciding this member: the most specific (member > pool > dc),
    the newest among equals."""
    best: Override | None = None
    for o in overrides:
        if o.applies(pool, member) and (
            best is None or (_SPECIFICITY[o.kind], o.created) > (_SPECIFICITY[best.kind], best.created)
        ):
            best = o
    return best
