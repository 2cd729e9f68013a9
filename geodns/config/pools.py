"""The `pools:` and `topology:` sections: members, policies, fallbacks (pure)."""

from __future__ import annotations

from typing import Any

from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    did_you_mean,
    int_in,
    mapping,
    one_of,
    to_ip,
    to_port,
    to_str,
    to_ttl,
    type_name,
    unknown,
)
from geodns.config.model import POLICIES, Check, Member, MinHealthy, Pool
from geodns.config.schemarec import accepts
from geodns.config.yamlload import YList
from geodns.errors import Location

FALLBACKS = ("all", "empty", "servfail")


def _member(ctx: Ctx, raw: Any, where: Location, path: str, dcs: set[str]) -> Member | None:
    m = mapping(ctx, raw, where, path)
    if m is None:
        return None
    f = Fields(ctx, m, path)
    address = f.get("address", to_ip, required=True)
    dc = f.get("dc", to_str, required=True)
    weight = f.get("weight", int_in(0, 1_000_000), 1)
    check_address = f.get("check_address", to_ip)
    check_port = f.get("check_port", to_port)
    f.finish()
    if dc is not None and dc not in dcs:
        f.error(
            "dc",
            unknown("datacenter", dc, dcs),
        )
        return None
    if address is None or dc is None or weight is None:
        return None
    return Member(address, dc, weight, check_address, check_port)


def parse_pools(
    ctx: Ctx, raw: Any, where: Location, dcs: set[str], checks: dict[str, Check]
) -> dict[str, Pool]:
    m = mapping(ctx, raw, where, "pools", allow_null=True)
    if m is None:
        return {}
    out: dict[str, Pool] = {}
    fallback_locs: dict[str, Location] = {}
    for name, value in m.items():
        path = f"pools.{name}"
        body = mapping(ctx, value, m.value_loc(name), path)
        if body is None:
            continue
        f = Fields(ctx, body, path)
        check = f.get("check", to_str)
        policy = f.get("policy", one_of(POLICIES), "failover")
        order = f.get_list("datacenters", to_str)
        fallback = f.get("fallback", to_str, "all")
        ttl = f.get("ttl", to_ttl)
        degraded_ttl = f.get("degraded_ttl", to_ttl)
        min_healthy = f.get("min_healthy", _min_healthy, MinHealthy())
        max_answers = f.get("max_answers", int_in(1, 64))
        ecs = f.get("ecs", one_of(("use", "ignore")), "use")
        raw_members = f.raw("members")
        f.has("members")
        f.finish()
        if check is not None and check not in checks:
            f.error(
                "check",
                unknown("check", check, checks),
            )
        if ttl is not None and degraded_ttl is not None and degraded_ttl > ttl:
            f.error("degraded_ttl", f"{degraded_ttl} must not exceed the pool's ttl ({ttl})")
        if max_answers is not None and policy not in ("weighted", "all"):
            f.error("max_answers", f"only applies to weighted and all pools, not {policy}")
        if "ecs" in body and policy != "geo":
            f.error("ecs", f"only applies to geo pools, not {policy}")
        if "min_healthy" in body and policy not in ("failover", "geo"):
            f.error("min_healthy", f"only applies to failover and geo pools, not {policy}")
        if fallback is not None and fallback not in FALLBACKS and not fallback.startswith("pool:"):
            f.error(
                "fallback",
                f"{fallback!r} is not one of: all, empty, servfail, pool:<name>"
                + did_you_mean(fallback, FALLBACKS),
            )
        fallback_locs[str(name)] = f.where("fallback")
        for dc in order or []:
            if dc not in dcs:
                f.error(
                    "datacenters",
                    unknown("datacenter", dc, dcs),
                )
        if order is not None and len(set(order)) != len(order):
            f.error("datacenters", "a datacenter is listed twice")
        members: list[Member] = []
        if not isinstance(raw_members, YList) or not raw_members:
            ctx.error(
                body.value_loc("members") if "members" in body else body.loc,
                f"{path}.members: a pool needs a non-empty list of members",
            )
        else:
            seen: dict[str, int] = {}
            for i, item in enumerate(raw_members):
                member = _member(ctx, item, raw_members.item_loc(i), f"{path}.members[{i}]", dcs)
                if member is None:
                    continue
                if member.address in seen:
                    ctx.error(
                        raw_members.item_loc(i),
                        f"{path}.members[{i}]: address {member.address} "
                        f"is already used by members[{seen[member.address]}]",
                    )
                    continue
                seen[member.address] = i
                if order is not None and member.dc not in order:
                    ctx.error(
                        raw_members.item_loc(i),
                        f"{path}.members[{i}]: datacenter {member.dc!r} "
                        "is not in the pool's datacenters list, so it would never be answered",
                    )
                members.append(member)
        if order is None:
            order = list(dict.fromkeys(mb.dc for mb in members))
        out[str(name)] = Pool(
            name=str(name),
            members=tuple(members),
            datacenters=tuple(order),
            check=check,
            policy=policy or "failover",
            fallback=fallback or "all",
            ttl=ttl,
            degraded_ttl=degraded_ttl,
            min_healthy=min_healthy or MinHealthy(),
            max_answers=max_answers,
            ecs=ecs or "use",
        )
    _check_fallback_chains(ctx, out, fallback_locs)
    return out


@accepts(
    {
        "anyOf": [
            {"type": "integer", "minimum": 1},
            {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            {"type": "string", "pattern": r"^(100(\.0+)?|[1-9][0-9]?(\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)%$"},
        ]
    }
)
def _min_healthy(value: Any) -> MinHealthy:
    """2 -> at least two members; "50%" or 0.5 -> at least half of the datacenter's members."""
    if isinstance(value, bool):
        raise Invalid(f"expected a count or a fraction, got {type_name(value)}")
    if isinstance(value, int):
        if value < 1:
            raise Invalid("must be at least 1")
        return MinHealthy(count=value)
    fraction = value
    if isinstance(value, str) and value.endswith("%"):
        try:
            fraction = float(value[:-1]) / 100
        except ValueError:
            raise Invalid(f"bad percentage {value!r}") from None
    if isinstance(fraction, float) and 0 < fraction <= 1:
        return MinHealthy(fraction=fraction)
    raise Invalid(f'expected a count (2), a fraction (0.5) or a percentage ("50%"), got {value!r}')


def _check_fallback_chains(ctx: Ctx, pools: dict[str, Pool], locs: dict[str, Location]) -> None:
    for name, pool in pools.items():
        seen = [name]
        current = pool
        while current.fallback.startswith("pool:"):
            target = current.fallback[5:]
            if target not in pools:
                ctx.error(
                    locs[current.name],
                    f"pools.{current.name}.fallback: " + unknown("pool", target, pools),
                )
                break
            if target in seen:
                if target == name:  # report each loop once, at its first member
                    chain = " -> ".join([*seen, target])
                    ctx.error(locs[name], f"pools.{name}.fallback: fallback loop {chain}")
                break
            seen.append(target)
            current = pools[target]
