"""The main config file (and the zone files it points at) -> Config.

`load()` is the one entry point: it reads files, then hands located YAML to
pure readers. Every problem in every file is collected before anything is
raised, so one `geodns check` run shows them all.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    int_in,
    mapping,
    to_duration,
    to_ip,
    to_port,
    to_str,
    to_ttl,
    type_name,
)
from geodns.config.model import (
    CHECK_TYPES,
    MODES,
    POLICIES,
    Check,
    Config,
    Datacenter,
    ListenAddress,
    Member,
    Pool,
    Route53Config,
    Route53Record,
    ServerConfig,
    TopologyRule,
)
from geodns.config.yamlload import YList, load_file
from geodns.config.zonefile import parse_zone
from geodns.errors import ConfigError, Location
from geodns.names import Name, NameSyntaxError, parse_name, to_text
from geodns.zone import Zone, ZoneSet

DEFAULT_CONFIG = Path("config/geodns.yaml")
FALLBACKS = ("all", "empty", "servfail")


def to_listen(value: Any) -> ListenAddress:
    """'127.0.0.1:5300' or '[::1]:5300'. Only literal addresses: a name to
    resolve at start-up would make the DNS server depend on DNS."""
    if not isinstance(value, str):
        raise Invalid(f"expected HOST:PORT, got {type_name(value)}")
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
    else:
        host, sep, port = value.rpartition(":")
        if ":" in host:
            raise Invalid(f"{value!r}: write IPv6 addresses in brackets, e.g. [::1]:5300")
    if not sep or not port.isdigit():
        raise Invalid(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:5300 or [::1]:5300)")
    port_num = int(port)
    if port_num > 65535:
        raise Invalid(f"{value!r}: port {port_num} is out of range 0..65535")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise Invalid(f"{value!r}: {host!r} is not an IP address") from None
    return ListenAddress(addr.compressed, port_num)


def _one_of(choices: tuple[str, ...]) -> Any:
    def conv(value: Any) -> str:
        text = to_str(value)
        if text not in choices:
            raise Invalid(f"{text!r} is not one of: {', '.join(choices)}")
        return text

    return conv


def _expect_status(value: Any) -> tuple[tuple[int, int], ...]:
    """[200, "200-299", 301] -> ranges."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            out.append((item, item))
            continue
        if isinstance(item, str):
            lo, sep, hi = item.partition("-")
            if sep and lo.strip().isdigit() and hi.strip().isdigit():
                a, b = int(lo), int(hi)
                if 100 <= a <= b <= 599:
                    out.append((a, b))
                    continue
        raise Invalid(f'bad status {item!r}: use codes 100-599 or ranges like "200-299"')
    if not out:
        raise Invalid("needs at least one status code")
    return tuple(out)


def _server(ctx: Ctx, raw: Any, where: Location, base: Path) -> ServerConfig:
    m = mapping(ctx, raw, where, "server", allow_null=True)
    if m is None:
        return ServerConfig()
    f = Fields(ctx, m, "server")
    d = ServerConfig()
    mode = f.get("mode", _one_of(MODES), d.mode)
    listen = f.get_list("dns_listen", to_listen, list(d.dns_listen), allow_scalar=True)
    http = d.http_listen
    if f.has("http_listen"):
        http = None if m["http_listen"] is None else f.get("http_listen", to_listen)
    state_dir = f.get("state_dir", to_str, str(d.state_dir))
    datacenter = f.get("datacenter", to_str)
    nsid = f.get("nsid", to_str)
    udp_size = f.get("edns_udp_size", int_in(512, 4096), d.edns_udp_size)
    idle = f.get("tcp_idle_timeout", to_duration, d.tcp_idle_timeout)
    max_conn = f.get("tcp_max_connections", int_in(1, 100000), d.tcp_max_connections)
    f.finish()
    if listen is not None and not listen and mode != "route53":
        f.error("dns_listen", "needs at least one address when serving DNS")
    if listen and len(set(listen)) != len(listen):
        f.error("dns_listen", "the same address is listed twice")
    return ServerConfig(
        mode=mode or d.mode,
        dns_listen=tuple(listen or ()),
        http_listen=http,
        state_dir=base / (state_dir or "var"),
        datacenter=datacenter,
        nsid=nsid.encode("utf-8") if nsid else None,
        edns_udp_size=udp_size or d.edns_udp_size,
        tcp_idle_timeout=idle or d.tcp_idle_timeout,
        tcp_max_connections=max_conn or d.tcp_max_connections,
    )


def _datacenters(ctx: Ctx, raw: Any, where: Location) -> tuple[Datacenter, ...]:
    m = mapping(ctx, raw, where, "datacenters")
    if m is None:
        return ()
    out = []
    for name, value in m.items():
        if not isinstance(name, str) or not name:
            ctx.error(m.key_loc(name), f"datacenter name must be a string, got {type_name(name)}")
            continue
        body = mapping(ctx, value, m.value_loc(name), f"datacenters.{name}", allow_null=True)
        if body is not None:
            Fields(ctx, body, f"datacenters.{name}").finish()  # no keys yet; typos are errors
        out.append(Datacenter(name))
    if not out:
        ctx.error(m.loc, "datacenters: define at least one datacenter")
    return tuple(out)


def _checks(ctx: Ctx, raw: Any, where: Location) -> dict[str, Check]:
    m = mapping(ctx, raw, where, "checks", allow_null=True)
    if m is None:
        return {}
    out: dict[str, Check] = {}
    for name, value in m.items():
        path = f"checks.{name}"
        body = mapping(ctx, value, m.value_loc(name), path)
        if body is None:
            continue
        f = Fields(ctx, body, path)
        d = Check(name=str(name), type="http")
        ctype = f.get("type", _one_of(CHECK_TYPES), required=True)
        port = f.get("port", to_port)
        path_value = f.get("path", to_str, d.path)
        statuses = f.get("expect_status", _expect_status, d.expect_status)
        body_match = f.get("expect_body", to_str)
        interval = f.get("interval", to_duration, d.interval)
        timeout = f.get("timeout", to_duration, d.timeout)
        rise = f.get("rise", int_in(1, 100), d.rise)
        fall = f.get("fall", int_in(1, 100), d.fall)
        f.finish()
        if interval is not None and timeout is not None and timeout >= interval:
            f.error("timeout", f"timeout ({timeout:g}s) must be shorter than interval ({interval:g}s)")
        if ctype == "tcp" and port is None:
            ctx.error(body.loc, f"{path}: a tcp check needs a 'port' (or check_port on each member)")
        if path_value is not None and not path_value.startswith("/"):
            f.error("path", f"must start with '/', got {path_value!r}")
        if ctype is None:
            continue
        out[str(name)] = Check(
            name=str(name),
            type=ctype,
            port=port,
            path=path_value or d.path,
            expect_status=statuses or d.expect_status,
            expect_body=body_match,
            interval=interval or d.interval,
            timeout=timeout or d.timeout,
            rise=rise or d.rise,
            fall=fall or d.fall,
        )
    return out


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
        f.error("dc", f"unknown datacenter {dc!r} (datacenters: {', '.join(sorted(dcs)) or 'none'})")
        return None
    if address is None or dc is None or weight is None:
        return None
    return Member(address, dc, weight, check_address, check_port)


def _pools(ctx: Ctx, raw: Any, where: Location, dcs: set[str], checks: dict[str, Check]) -> dict[str, Pool]:
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
        policy = f.get("policy", _one_of(POLICIES), "failover")
        order = f.get_list("datacenters", to_str)
        fallback = f.get("fallback", to_str, "all")
        ttl = f.get("ttl", to_ttl)
        raw_members = f.raw("members")
        f.has("members")
        f.finish()
        if check is not None and check not in checks:
            f.error("check", f"unknown check {check!r} (checks: {', '.join(sorted(checks)) or 'none'})")
        if fallback is not None and fallback not in FALLBACKS and not fallback.startswith("pool:"):
            f.error("fallback", f"{fallback!r} is not one of: all, empty, servfail, pool:<name>")
        fallback_locs[str(name)] = f.where("fallback")
        for dc in order or []:
            if dc not in dcs:
                f.error("datacenters", f"unknown datacenter {dc!r} (datacenters: {', '.join(sorted(dcs))})")
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
        )
    _check_fallback_chains(ctx, out, fallback_locs)
    return out


def _check_fallback_chains(ctx: Ctx, pools: dict[str, Pool], locs: dict[str, Location]) -> None:
    for name, pool in pools.items():
        seen = [name]
        current = pool
        while current.fallback.startswith("pool:"):
            target = current.fallback[5:]
            if target not in pools:
                ctx.error(locs[current.name], f"pools.{current.name}.fallback: unknown pool {target!r}")
                break
            if target in seen:
                if target == name:  # report each loop once, at its first member
                    chain = " -> ".join([*seen, target])
                    ctx.error(locs[name], f"pools.{name}.fallback: fallback loop {chain}")
                break
            seen.append(target)
            current = pools[target]


def _topology(ctx: Ctx, raw: Any, where: Location, dcs: set[str]) -> tuple[TopologyRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, YList):
        ctx.error(where, f"topology: expected a list of rules, got {type_name(raw)}")
        return ()
    rules = []
    for i, item in enumerate(raw):
        path = f"topology[{i}]"
        m = mapping(ctx, item, raw.item_loc(i), path)
        if m is None:
            continue
        f = Fields(ctx, m, path)

        def network(v: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
            try:
                return ipaddress.ip_network(to_str(v), strict=True)
            except ValueError as exc:
                raise Invalid(f"{v!r} is not a network: {exc}") from None

        match = f.get("match", network, required=True)
        prefer = f.get_list("prefer", to_str)
        if "prefer" not in m:
            ctx.error(m.loc, f"{path}: missing required key 'prefer'")
        f.finish()
        for dc in prefer or []:
            if dc not in dcs:
                f.error("prefer", f"unknown datacenter {dc!r}")
        if match is not None and prefer:
            rules.append(TopologyRule(match, tuple(prefer)))
    return tuple(rules)


def _abs_name(value: Any) -> Name:
    text = to_str(value)
    if not text.endswith("."):
        raise Invalid(f"{text!r} must be an absolute name ending with a dot")
    try:
        return parse_name(text, None)
    except NameSyntaxError as exc:
        raise Invalid(str(exc)) from None


def _route53(ctx: Ctx, raw: Any, where: Location, pools: dict[str, Pool]) -> Route53Config | None:
    m = mapping(ctx, raw, where, "route53", allow_null=True)
    if m is None:
        return None
    f = Fields(ctx, m, "route53")
    region = f.get("region", to_str, "us-east-1")
    endpoint = None if m.get("endpoint_url") is None else f.get("endpoint_url", to_str)
    f.has("endpoint_url")
    raw_records = f.raw("records")
    f.has("records")
    f.finish()
    records = []
    if raw_records is not None and not isinstance(raw_records, YList):
        f.error("records", f"expected a list, got {type_name(raw_records)}")
    for i, item in enumerate(raw_records or []):
        path = f"route53.records[{i}]"
        rm = mapping(ctx, item, raw_records.item_loc(i), path)
        if rm is None:
            continue
        rf = Fields(ctx, rm, path)
        name = rf.get("name", _abs_name, required=True)
        zone_id = rf.get("hosted_zone_id", to_str, required=True)
        pool = rf.get("pool", to_str, required=True)
        ttl = rf.get("ttl", to_ttl, 60)
        rf.finish()
        if pool is not None and pool not in pools:
            rf.error("pool", f"unknown pool {pool!r}")
            continue
        if name is not None and zone_id is not None and pool is not None:
            records.append(Route53Record(name, zone_id, pool, ttl if ttl is not None else 60))
    return Route53Config(region=region or "us-east-1", endpoint_url=endpoint, records=tuple(records))


def _zones(ctx: Ctx, zones_dir: Path, where: Location, pools: dict[str, Pool]) -> ZoneSet:
    if not zones_dir.is_dir():
        ctx.error(where, f"zones_dir: {str(zones_dir)!r} is not a directory")
        return ZoneSet({})
    zones: dict[Name, Zone] = {}
    files: dict[Name, str] = {}
    for path in sorted([*zones_dir.glob("*.yaml"), *zones_dir.glob("*.yml")]):
        doc = load_file(path, ctx.issues)
        if doc is None:
            if not any(i.where.file == str(path) for i in ctx.issues):
                ctx.error(Location(str(path), 1, 1), "zone file is empty")
            continue
        zone = parse_zone(ctx, doc, str(path), pools, default_serial=int(path.stat().st_mtime))
        if zone is None:
            continue
        if zone.origin in files:
            ctx.error(
                Location(str(path), 1, 1),
                f"zone {to_text(zone.origin)} is already defined in {files[zone.origin]}",
            )
            continue
        files[zone.origin] = str(path)
        zones[zone.origin] = zone
    return ZoneSet(zones)


def parse(ctx: Ctx, doc: Any, source: Path) -> Config | None:
    """Located YAML of the main file -> Config; zone files are read from zones_dir."""
    top = mapping(ctx, doc, Location(str(source), 1, 1), "config file")
    if top is None:
        return None
    base = source.parent
    f = Fields(ctx, top, "")
    server = _server(ctx, f.raw("server"), top.value_loc("server"), base)
    dc_raw = f.raw("datacenters")
    datacenters = _datacenters(ctx, dc_raw, top.value_loc("datacenters")) if f.has("datacenters") else ()
    dcs = {d.name for d in datacenters}
    checks = _checks(ctx, f.raw("checks"), top.value_loc("checks"))
    pools = _pools(ctx, f.raw("pools"), top.value_loc("pools"), dcs, checks)
    topology = _topology(ctx, f.raw("topology"), top.value_loc("topology"), dcs)
    zones_dir_text = f.get("zones_dir", to_str, "zones")
    route53 = _route53(ctx, f.raw("route53"), top.value_loc("route53"), pools) if f.has("route53") else None
    f.finish()
    if server.datacenter is not None and server.datacenter not in dcs and datacenters:
        ctx.error(top.value_loc("server"), f"server.datacenter: unknown datacenter {server.datacenter!r}")
    zones_dir = base / (zones_dir_text or "zones")
    zones = ZoneSet({})
    if server.mode != "route53" or "zones_dir" in top:
        zones = _zones(ctx, zones_dir, top.value_loc("zones_dir") if "zones_dir" in top else top.loc, pools)
        if server.mode != "route53" and not zones.zones and zones_dir.is_dir():
            ctx.error(top.loc, f"no zone files (*.yaml) found in {str(zones_dir)!r}")
    if server.mode in ("route53", "both") and (route53 is None or not route53.records):
        ctx.error(top.loc, f"server.mode is {server.mode!r} but route53.records is empty")
    return Config(
        source=source,
        server=server,
        datacenters=datacenters,
        checks=checks,
        pools=pools,
        topology=topology,
        zones_dir=zones_dir,
        zones=zones,
        route53=route53,
    )


def load(path: Path) -> Config:
    """Load and validate everything; raise ConfigError listing every problem."""
    ctx = Ctx()
    doc = load_file(path, ctx.issues)
    config = None
    if doc is None and not ctx.issues:
        ctx.error(Location(str(path), 1, 1), "config file is empty")
    elif doc is not None:
        config = parse(ctx, doc, path)
    if ctx.issues or config is None:
        raise ConfigError(ctx.issues)
    return config
