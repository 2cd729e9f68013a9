"""Validated configuration as frozen dataclasses (pure).

Field names follow the YAML keys users write (see README "Configuration
reference"); those names are a contract, so rename nothing here lightly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from geodns.zone.names import Name
from geodns.zone.zone import ZoneSet

MODES = ("authoritative", "route53", "both")
POLICIES = ("failover", "weighted", "all", "geo")
CHECK_TYPES = ("http", "https", "tcp", "exec")


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @property
    def family_v6(self) -> bool:
        return ":" in self.host

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family_v6 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RateLimit:
    """Response rate limiting for UDP (`server.rate_limit`). Defaults are NSD's:
    200 responses/s per /24 (IPv4) or /56 (IPv6), response class and name, and
    every 2nd limited response sent truncated so real resolvers retry over TCP."""

    responses_per_second: int = 200  # 0: off
    slip: int = 2  # every Nth limited response goes out with TC=1; 0: drop them all
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    # Loopback cannot be forged from outside (the kernel drops such packets as
    # martians): local monitoring and a co-located resolver are never limited.
    exempt: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    table_size: int = 100_000  # networks and buckets tracked: fixed memory, whatever the sources

    @property
    def enabled(self) -> bool:
        return self.responses_per_second > 0


@dataclass(frozen=True)
class ServerConfig:
    mode: str = "authoritative"
    dns_listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 5300),)
    http_listen: ListenAddress | None = ListenAddress("127.0.0.1", 8053)
    state_dir: Path = Path("var")
    datacenter: str | None = None
    nsid: bytes | None = None
    edns_udp_size: int = 1232
    tcp_idle_timeout: float = 10.0
    tcp_max_connections: int = 256
    tcp_message_timeout: float = 3.0  # a query must arrive whole this soon after its first byte
    tcp_max_lifetime: float = 120.0  # then the connection is closed, however busy
    tcp_max_queued: int = 256 * 1024  # bytes of replies a client leaves unread before it is dropped
    max_concurrent_probes: int = 256
    max_probe_rate: int = 1000  # probe starts per second; beyond it probes are skipped, states held
    answer_cache_size: int = 64 * 1024 * 1024  # bytes, UDP and TCP replies together
    api_max_connections: int = 64
    api_allowed_hosts: tuple[str, ...] = ()  # Host names the API answers to beyond its address and loopback
    api_token_file: Path | None = None  # bearer token for writes; GEODNS_API_TOKEN also works
    api_read_token_file: Path | None = None  # bearer token for /v1/* and /metrics; GEODNS_API_READ_TOKEN
    workers: int = 0  # DNS worker processes; 0: "auto", one per CPU up to MAX_AUTO_WORKERS
    name: str | None = None  # this instance's name among its peers; None: the host name
    rate_limit: RateLimit = RateLimit()


MAX_AUTO_WORKERS = 8  # each worker holds its own zones and answer cache: more only when asked
MAX_WORKERS = 128


def worker_count(server: ServerConfig, cpus: int | None) -> int:
    """How many DNS worker processes to run (1: answer in the main process)."""
    if server.workers:
        return server.workers
    return max(1, min(cpus or 1, MAX_AUTO_WORKERS))


@dataclass(frozen=True)
class Datacenter:
    name: str
    location: tuple[float, float] | None = None  # (lat, lon): for `prefer: nearest`


@dataclass(frozen=True)
class Matcher:
    """`expect_body` / `expect`: a substring, or a regular expression written /like this/."""

    text: str
    pattern: re.Pattern[str] | None = None

    def matches(self, data: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(data) is not None
        return self.text in data

    def __str__(self) -> str:
        return f"/{self.text}/" if self.pattern is not None else repr(self.text)


@dataclass(frozen=True)
class Check:
    name: str
    type: str
    port: int | None = None
    # http / https
    path: str = "/"
    method: str = "GET"
    host: str | None = None  # Host header and TLS SNI; default: the target address
    headers: tuple[tuple[str, str], ...] = ()
    expect_status: tuple[tuple[int, int], ...] = ((200, 299),)
    expect_body: Matcher | None = None
    tls_verify: bool = True
    ca_file: Path | None = None
    # tcp
    send: str | None = None
    expect: Matcher | None = None
    # exec
    command: tuple[str, ...] = ()
    # timing and hysteresis
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    jitter: float | None = None  # None: 10% of interval

    @property
    def effective_jitter(self) -> float:
        return self.interval * 0.1 if self.jitter is None else self.jitter

    @property
    def default_port(self) -> int | None:
        if self.port is not None:
            return self.port
        return {"http": 80, "https": 443}.get(self.type)


@dataclass(frozen=True)
class Member:
    address: str  # canonical text
    dc: str
    weight: int = 1
    check_address: str | None = None
    check_port: int | None = None

    @property
    def is_v6(self) -> bool:
        return ":" in self.address


@dataclass(frozen=True)
class MinHealthy:
    """`min_healthy`: a count (2) or a fraction of the datacenter's members ("50%" or 0.5)."""

    count: int = 1
    fraction: float | None = None

    def satisfied(self, healthy: int, total: int) -> bool:
        if healthy == 0:
            return False
        if self.fraction is not None:
            return healthy >= self.fraction * total
        return healthy >= self.count


@dataclass(frozen=True)
class Pool:
    name: str
    members: tuple[Member, ...]
    datacenters: tuple[str, ...]
    check: str | None = None
    policy: str = "failover"
    fallback: str = "all"
    ttl: int | None = None
    degraded_ttl: int | None = None  # TTL while any member is not up, so clients come back soon
    min_healthy: MinHealthy = MinHealthy()
    max_answers: int | None = None  # weighted/all: at most this many addresses (None: all healthy)
    ecs: str = "use"  # geo: "use" the EDNS Client Subnet, or "ignore" it (steer by source)


@dataclass(frozen=True)
class TopologyRule:
    """One `topology` rule: what it matches (exactly one of a subnet, countries,
    continents, subdivisions, ASNs, or everything as the default), and the
    datacenters it prefers, in order, or the nearest ones (`nearest`)."""

    match: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    prefer: tuple[str, ...]
    countries: frozenset[str] = frozenset()
    continents: frozenset[str] = frozenset()
    subdivisions: frozenset[str] = frozenset()  # ISO 3166-2: "US-CA"
    asns: frozenset[int] = frozenset()
    default: bool = False
    nearest: bool = False  # datacenters by great-circle distance from the client

    def describe(self) -> str:
        what = (
            str(self.match)
            if self.match is not None
            else "subdivision " + ",".join(sorted(self.subdivisions))
            if self.subdivisions
            else "country " + ",".join(sorted(self.countries))
            if self.countries
            else "continent " + ",".join(sorted(self.continents))
            if self.continents
            else "asn " + ",".join(map(str, sorted(self.asns)))
            if self.asns
            else "default"
        )
        return f"{what} -> {'nearest' if self.nearest else ', '.join(self.prefer)}"


@dataclass(frozen=True)
class GeoIPConfig:
    database: Path  # a MaxMind DB: GeoLite2/GeoIP2 City or Country, DB-IP lite, ...
    asn_database: Path | None = None
    watch_interval: float = 30.0  # how often the files are checked for a new version


@dataclass(frozen=True)
class Route53Record:
    name: Name
    hosted_zone_id: str
    pool: str
    ttl: int = 60


@dataclass(frozen=True)
class Route53Config:
    region: str = "us-east-1"
    endpoint_url: str | None = None
    records: tuple[Route53Record, ...] = ()
    owner: str = "geodns"  # SetIdentifiers are "<owner>-<datacenter>"; only those are touched
    reconcile_interval: float = 60.0  # drift repair even when health is quiet
    debounce: float = 1.0  # a burst of health changes makes one change batch
    max_change_fraction: float = 0.3  # config-driven creates+deletes beyond this need --force
    requests_per_second: float = 5.0  # Route53's documented limit per account
    unready_after: int = 3  # failed rounds in a row before /readyz says the sync is failing


@dataclass(frozen=True)
class Peer:
    """Another geodns instance: its HTTP API, and the datacenter it looks from."""

    name: str
    url: str  # http(s)://host:port of its API
    datacenter: str | None = None


QUORUMS = ("majority", "any", "all")


@dataclass(frozen=True)
class ClusterConfig:
    """`cluster:` several instances deciding health together (see README "Running
    several instances"). Present even without peers: the blast-radius governor."""

    peers: tuple[Peer, ...] = ()
    token_file: Path | None = None  # shared bearer secret; GEODNS_CLUSTER_TOKEN also works
    ca_file: Path | None = None  # for https peers with a private CA
    interval: float = 1.0  # a peer is asked at least this often (changes arrive at once)
    timeout: float = 3.0  # a peer not heard from for this long is not counted
    quorum: str | int = "majority"  # vantages that must say down: majority, any, all or a count
    isolation: float = 0.5  # share of remote targets a vantage alone sees down to be isolated
    max_down_fraction: float = 0.75  # more of all targets going down at once: a checker fault
    down_window: float = 60.0
    hold_max: float = 600.0


@dataclass(frozen=True)
class Config:
    source: Path
    server: ServerConfig
    datacenters: tuple[Datacenter, ...] = ()
    checks: dict[str, Check] = field(default_factory=dict)
    pools: dict[str, Pool] = field(default_factory=dict)
    topology: tuple[TopologyRule, ...] = ()
    geoip: GeoIPConfig | None = None
    zones_dir: Path | None = None
    zones: ZoneSet = field(default_factory=lambda: ZoneSet({}))
    route53: Route53Config | None = None
    cluster: ClusterConfig | None = None
    # zone cache key (a hash of everything a zone was built from) -> its origin: a reload
    # reuses the zones whose key did not change instead of building them again
    zone_keys: Mapping[str, Name] = field(default_factory=dict)
