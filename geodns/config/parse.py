"""The main config file (and the zone files it points at) -> Config.

`load()` is the one entry point: it reads files, then hands located YAML to
pure readers. Every problem in every file is collected before anything is
raised, so one `geodns check` run shows them all.
"""

from __future__ import annotations

import gc
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geodns.config.checks import parse_checks
from geodns.config.cluster import parse_cluster, to_instance_name
from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    beside,
    int_in,
    int_or_auto,
    mapping,
    one_of,
    to_duration,
    to_network,
    to_size,
    to_str,
    type_name,
    unknown,
)
from geodns.config.model import (
    MAX_WORKERS,
    MODES,
    Config,
    Datacenter,
    ListenAddress,
    RateLimit,
    ServerConfig,
)
from geodns.config.pools import parse_pools
from geodns.config.route53 import parse_route53
from geodns.config.schemarec import accepts
from geodns.config.topology import parse_geoip, parse_location, parse_topology
from geodns.config.yamlload import YMap, load_file
from geodns.config.zonesdir import Compiler, Sources, read_zones
from geodns.errors import ConfigError, Location
from geodns.zone.zone import Zone, ZoneSet

DEFAULT_CONFIG = Path("config/geodns.yaml")


# HOST:PORT, the port 0..65535 (0: any free one).
@accepts(
    {
        "type": "string",
        "pattern": ":([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$",
    }
)
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


def _server(ctx: Ctx, raw: Any, where: Location, base: Path) -> ServerConfig:
    m = mapping(ctx, raw, where, "server", allow_null=True)
    if m is None:
        return ServerConfig()
    f = Fields(ctx, m, "server")
    d = ServerConfig()
    mode = f.get("mode", one_of(MODES), d.mode)
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
    message = f.get("tcp_message_timeout", to_duration, d.tcp_message_timeout)
    lifetime = f.get("tcp_max_lifetime", to_duration, d.tcp_max_lifetime)
    queued = f.get("tcp_max_queued", to_size(16 * 1024, 64 * 1024**2), d.tcp_max_queued)
    max_probes = f.get("max_concurrent_probes", int_in(1, 100000), d.max_concurrent_probes)
    probe_rate = f.get("max_probe_rate", int_in(1, 1000000), d.max_probe_rate)
    cache_size = f.get("answer_cache_size", to_size(0, 64 * 1024**3), d.answer_cache_size)
    api_conns = f.get("api_max_connections", int_in(1, 10000), d.api_max_connections)
    api_hosts = f.get_list("api_allowed_hosts", to_str, [])
    token_file = f.get("api_token_file", to_str)
    read_token_file = f.get("api_read_token_file", to_str)
    workers = f.get("workers", int_or_auto(1, MAX_WORKERS), d.workers)
    name = f.get("name", to_instance_name)
    rate_limit = _rate_limit(ctx, m, f)
    f.finish()
    if listen is not None and not listen and mode != "route53":
        f.error("dns_listen", "needs at least one address when serving DNS")
    if listen and len(set(listen)) != len(listen):
        f.error("dns_listen", "the same address is listed twice")
    return ServerConfig(
        mode=mode or d.mode,
        dns_listen=tuple(listen or ()),
        http_listen=http,
        state_dir=beside(base, state_dir or "var"),
        datacenter=datacenter,
        nsid=nsid.encode("utf-8") if nsid else None,
        edns_udp_size=udp_size or d.edns_udp_size,
        tcp_idle_timeout=idle or d.tcp_idle_timeout,
        tcp_max_connections=max_conn or d.tcp_max_connections,
        tcp_message_timeout=message or d.tcp_message_timeout,
        tcp_max_lifetime=lifetime or d.tcp_max_lifetime,
        tcp_max_queued=queued or d.tcp_max_queued,
        max_concurrent_probes=max_probes or d.max_concurrent_probes,
        max_probe_rate=probe_rate or d.max_probe_rate,
        answer_cache_size=d.answer_cache_size if cache_size is None else cache_size,
        api_max_connections=api_conns or d.api_max_connections,
        api_allowed_hosts=tuple(h.lower() for h in api_hosts or ()),
        api_token_file=beside(base, token_file) if token_file else None,
        api_read_token_file=beside(base, read_token_file) if read_token_file else None,
        workers=d.workers if workers is None else workers,
        rate_limit=rate_limit,
        name=name,
    )


def _rate_limit(ctx: Ctx, server: YMap, parent: Fields) -> RateLimit:
    """`server.rate_limit`: a mapping, or `false` to turn it off."""
    d = RateLimit()
    if not parent.has("rate_limit"):
        return d
    raw = server["rate_limit"]
    if raw is False:
        return RateLimit(responses_per_second=0)
    m = mapping(ctx, raw, parent.where("rate_limit"), "server.rate_limit")
    if m is None:
        return d
    f = Fields(ctx, m, "server.rate_limit")
    rate = f.get("responses_per_second", int_in(0, 1_000_000), d.responses_per_second)
    slip = f.get("slip", int_in(0, 100), d.slip)
    v4 = f.get("ipv4_prefix", int_in(8, 32), d.ipv4_prefix)
    v6 = f.get("ipv6_prefix", int_in(16, 128), d.ipv6_prefix)
    exempt = f.get_list("exempt", to_network, list(d.exempt), allow_scalar=True)
    size = f.get("table_size", int_in(1000, 10_000_000), d.table_size)
    f.finish()
    return RateLimit(
        responses_per_second=d.responses_per_second if rate is None else rate,
        slip=d.slip if slip is None else slip,
        ipv4_prefix=v4 or d.ipv4_prefix,
        ipv6_prefix=v6 or d.ipv6_prefix,
        exempt=d.exempt if exempt is None else tuple(exempt),
        table_size=size or d.table_size,
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
        location = None
        if body is not None:
            f = Fields(ctx, body, f"datacenters.{name}")
            location = parse_location(f)
            f.finish()
        out.append(Datacenter(name, location))
    if not out:
        ctx.error(m.loc, "datacenters: define at least one datacenter")
    return tuple(out)


def parse(
    ctx: Ctx,
    doc: Any,
    source: Path,
    *,
    use_cache: bool = False,
    reuse: Mapping[str, Zone] | None = None,
    compiler: Compiler | None = None,
) -> Config | None:
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
    checks = parse_checks(ctx, f.raw("checks"), top.value_loc("checks"), base)
    pools = parse_pools(ctx, f.raw("pools"), top.value_loc("pools"), dcs, checks)
    geoip = parse_geoip(ctx, f.raw("geoip"), top.value_loc("geoip"), base) if f.has("geoip") else None
    by_name = {d.name: d for d in datacenters}
    topology = parse_topology(ctx, f.raw("topology"), top.value_loc("topology"), by_name, geoip)
    zones_dir_text = f.get("zones_dir", to_str, "zones")
    route53 = (
        parse_route53(ctx, f.raw("route53"), top.value_loc("route53"), pools) if f.has("route53") else None
    )
    cluster = None
    if f.has("cluster"):
        cluster = parse_cluster(ctx, f.raw("cluster"), top.value_loc("cluster"), base, dcs, server.name)
    f.finish()
    if server.datacenter is not None and server.datacenter not in dcs and datacenters:
        ctx.error(
            top.value_loc("server"),
            "server.datacenter: " + unknown("datacenter", server.datacenter, dcs),
        )
    zones_dir = beside(base, zones_dir_text or "zones")
    zones = ZoneSet({})
    cache_dir = server.state_dir / "zonecache" if use_cache else None
    sources = Sources(pools, cache_dir, reuse or {}, compiler)
    if server.mode != "route53" or "zones_dir" in top:
        where = top.value_loc("zones_dir") if "zones_dir" in top else top.loc
        zones = read_zones(ctx, zones_dir, where, sources)
        files = [*zones_dir.glob("*.yaml"), *zones_dir.glob("*.yml")] if zones_dir.is_dir() else None
        if server.mode != "route53" and files == []:
            ctx.error(
                where,
                f"zones_dir: no zone files (*.yaml) in {str(zones_dir)!r}: nothing to answer for"
                + ("" if "zones_dir" in top else " (zones_dir defaults to 'zones' beside this file)"),
            )
    if server.mode in ("route53", "both") and (route53 is None or not route53.records):
        ctx.error(top.loc, f"server.mode is {server.mode!r} but route53.records is empty")
    return Config(
        source=source,
        server=server,
        datacenters=datacenters,
        checks=checks,
        pools=pools,
        topology=topology,
        geoip=geoip,
        zones_dir=zones_dir,
        zones=zones,
        route53=route53,
        cluster=cluster,
        zone_keys=sources.keys,
    )


def load(
    path: Path,
    *,
    use_cache: bool = False,
    reuse: Mapping[str, Zone] | None = None,
    compiler: Compiler | None = None,
) -> Config:
    """Load and validate everything; raise ConfigError listing every problem.

    With use_cache, zones whose input is unchanged since a clean load come from
    state_dir/zonecache instead of their YAML (the daemon's start-up and reloads);
    zones in `reuse` (cache key -> zone, from the running config) are taken as they
    are. `compiler`, when a zone of BIG_ZONE bytes or more is not in the cache: fills
    the cache from another process (True when it did), before this one reads YAML."""
    # Loading builds hundreds of thousands of small objects and frees none: the
    # cyclic GC's passes over the growing heap were pure cost (~1 s per 100,000
    # records). Reference counting still frees what is dropped.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(path, use_cache, reuse, compiler)
    finally:
        # What survived is long-lived: out of the collector's sight before it resumes,
        # or its first young-generation pass would walk every record just built.
        gc.freeze()
        if collecting:
            gc.enable()


def _load(path: Path, use_cache: bool, reuse: Mapping[str, Zone] | None, compiler: Compiler | None) -> Config:
    ctx = Ctx()
    doc = load_file(path, ctx.issues)
    config = None
    if doc is None and not ctx.issues:
        ctx.error(Location(str(path), 1, 1), "config file is empty")
    elif doc is not None:
        config = parse(ctx, doc, path, use_cache=use_cache, reuse=reuse, compiler=compiler)
    if ctx.issues or config is None:
        raise ConfigError(ctx.issues)
    return config
