"""GeoIP steering: databases the tests write themselves (nested networks, IPv6 and
IPv4-mapped space, missing fields, clients the database does not know, a database
without locations), rules by country, continent, subdivision, ASN and default with
their precedence, the nearest live datacenter, exact ECS scopes, config errors,
and answers over real sockets with ECS."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import dns.edns
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from geodns.config import Config, load
from geodns.daemon import Daemon
from geodns.errors import ConfigError
from geodns.geoip import isocodes
from geodns.geoip.database import GeoDatabase
from geodns.geoip.info import distance_km, from_records
from geodns.steering.geochoice import geo_choice
from tests.backends import backends_on
from tests.configs import write_zone
from tests.conftest import serving
from tests.daemonproc import run_geodns
from tests.dnsclient import Endpoint, ask
from tests.geoipdb import city, write
from tests.waiting import until

# par (Paris), ams (Amsterdam), nyc (New York), with their coordinates.
LOCATIONS = {"par": (48.86, 2.35), "ams": (52.37, 4.90), "nyc": (40.71, -74.01)}
NETWORKS = {
    "81.0.0.0/8": city("GB", "EU", 51.5, -0.12),  # London: nearest ams? no: par (344 km) vs ams (358 km)
    "81.2.69.0/24": city("FR", "EU", 43.6, 1.44),  # Toulouse, nested in the /8
    "1.0.0.0/8": city("AU", "OC", -33.87, 151.2),  # Sydney
    "12.0.0.0/8": city("US", "NA", 34.05, -118.24, subdivision="CA"),  # Los Angeles
    "13.0.0.0/8": city("US", "NA", 40.71, -74.0, subdivision="NY"),
    "41.0.0.0/8": city(None, "AF"),  # a continent and nothing else: no location
    "2001:db8::/32": city("DE", "EU", 52.52, 13.40),  # Berlin, IPv6
}


def _config(tmp_path: Path, topology: str, *, asn: bool = False, extra_dc: str = "") -> Path:
    write(tmp_path / "city.mmdb", NETWORKS)
    if asn:
        write(
            tmp_path / "asn.mmdb",
            {"81.2.0.0/16": {"autonomous_system_number": 64500, "autonomous_system_organization": "Example"}},
            kind="GeoLite2-ASN",
        )
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    dcs = ", ".join(
        f"{name}: {{location: {{lat: {lat}, lon: {lon}}}}}" for name, (lat, lon) in LOCATIONS.items()
    )
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: null, state_dir: state, workers: 1}\n'
        f"datacenters: {{{dcs}{extra_dc}}}\n"
        "geoip: {database: city.mmdb" + (", asn_database: asn.mmdb" if asn else "") + "}\n"
        "pools:\n  web:\n    policy: geo\n    datacenters: [par, ams, nyc]\n"
        "    members: [{address: 192.0.2.1, dc: par}, {address: 192.0.2.2, dc: ams},"
        " {address: 192.0.2.3, dc: nyc}]\n"
        f"topology:\n{topology}"
    )
    return tmp_path / "geodns.yaml"


RULES = (
    "  - {match: 81.2.69.128/25, prefer: [nyc]}\n"  # a subnet rule beats every database answer
    "  - {subdivision: US-CA, prefer: [ams]}\n"
    "  - {country: [FR, BE], prefer: [par]}\n"
    "  - {country: US, prefer: [nyc]}\n"
    "  - {continent: EU, prefer: [ams]}\n"
    "  - {asn: 64500, prefer: [nyc]}\n"
    "  - {default: true, prefer: nearest}\n"
)


def _choice(config: Config, address: str) -> tuple[str, tuple[str, ...], int]:
    assert config.geoip is not None
    geo = GeoDatabase(config.geoip.database, config.geoip.asn_database).lookup
    found = geo_choice(config, ipaddress.ip_address(address), geo)
    assert found.rule is not None
    return found.rule.describe(), found.order, found.scope


def test_precedence_scopes_and_nearest(tmp_path: Path) -> None:
    config = load(_config(tmp_path, RULES, asn=True))
    # Subnet first, with the scope that excludes nothing else.
    assert _choice(config, "81.2.69.200") == ("81.2.69.128/25 -> nyc", ("nyc",), 25)
    # The /24 of Toulouse, outside the /25 rule: country FR; the scope is the /25
    # boundary (the rule's half excluded), longer than the database's /24.
    assert _choice(config, "81.2.69.7") == ("country BE,FR -> par", ("par",), 25)
    # Subdivision beats country: Los Angeles is US-CA.
    assert _choice(config, "12.1.2.3") == ("subdivision US-CA -> ams", ("ams",), 8)
    assert _choice(config, "13.1.2.3") == ("country US -> nyc", ("nyc",), 8)
    # Country beats continent, continent beats ASN: London is GB in EU and AS64500's /16 is inside.
    # The database network around 81.7.0.1 is 81.4.0.0/14: the /8 minus the nested /24.
    assert _choice(config, "81.7.0.1") == ("continent EU -> ams", ("ams",), 14)
    assert _choice(config, "81.2.3.4")[0] == "continent EU -> ams"
    # IPv6 in the same database.
    assert _choice(config, "2001:db8::1") == ("continent EU -> ams", ("ams",), 32)
    # IPv4-mapped IPv6 is the IPv4 address, its scope counted in IPv6 bits.
    assert _choice(config, "::ffff:13.1.2.3") == ("country US -> nyc", ("nyc",), 96 + 8)
    # Sydney has no rule but the default: nearest, by great circle (nyc is not nearest
    # from Sydney: par 16,960 km, ams 16,630 km, nyc 15,990 km).
    rule, order, scope = _choice(config, "1.2.3.4")
    assert rule == "default -> nearest" and order == ("nyc", "ams", "par") and scope == 8
    # Africa without coordinates: the default rule, in the pool's own order.
    assert _choice(config, "41.1.1.1")[:2] == ("default -> nearest", ())
    # Not in the database at all: the default rule, over the empty network's span.
    rule, order, scope = _choice(config, "100.64.0.1")
    assert rule == "default -> nearest" and order == () and 0 < scope <= 8


def test_records_with_missing_or_wrong_fields_are_read_defensively() -> None:
    info = from_records(
        {"country": {"iso_code": "fr"}, "location": {"latitude": "x", "longitude": 3}}, 24, None, None
    )
    assert info.country == "FR" and info.location is None and info.prefix == 24
    info = from_records(
        {"registered_country": {"iso_code": "DE"}, "subdivisions": "nope"},
        16,
        {"autonomous_system_number": True},
        20,
    )
    assert info.country == "DE" and info.subdivisions == () and info.asn is None and info.prefix == 20
    assert from_records(None, 7, None, None).country is None
    assert 340 < distance_km(LOCATIONS["par"], (51.5, -0.12)) < 350  # Paris - London


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=2**32 - 1))
def test_every_address_inside_the_scope_gets_the_same_choice(
    tmp_path_factory: pytest.TempPathFactory, a: int, b: int
) -> None:
    config = _cached_config(tmp_path_factory)
    assert config.geoip is not None
    geo = GeoDatabase(config.geoip.database, config.geoip.asn_database).lookup
    # Two kinds of clients: anywhere, and near the interesting networks.
    for client in (ipaddress.IPv4Address(a), ipaddress.IPv4Address((81 << 24) | (a & 0xFFFFFF))):
        choice = geo_choice(config, client, geo)
        network = ipaddress.ip_network(f"{client}/{choice.scope}", strict=False)
        other = ipaddress.IPv4Address(int(network.network_address) + b % network.num_addresses)
        again = geo_choice(config, other, geo)
        assert (again.rule, again.order) == (choice.rule, choice.order), (client, other, choice.scope)


_CACHE: dict[str, Config] = {}


def _cached_config(factory: pytest.TempPathFactory) -> Config:
    if "c" not in _CACHE:
        _CACHE["c"] = load(_config(factory.mktemp("geo"), RULES, asn=True))
    return _CACHE["c"]


@pytest.mark.parametrize(
    ("geoip", "rule", "message"),
    [
        ("{database: missing.mmdb}", "{default: true, prefer: [par]}", "cannot read"),
        ("{database: junk.mmdb}", "{default: true, prefer: [par]}", "is not a usable MaxMind DB"),
        (
            "{database: city.mmdb}",
            "{country: UK, prefer: [par]}",
            "'UK' is not an ISO 3166-1 country code (did you mean 'GB'?)",
        ),
        ("{database: city.mmdb}", "{continent: EUR, prefer: [par]}", "not a continent code"),
        (
            "{database: city.mmdb}",
            "{subdivision: US-CX, prefer: [par]}",
            "not an ISO 3166-2 subdivision code (did you mean",
        ),
        ("{database: city.mmdb}", "{country: FR, continent: EU, prefer: [par]}", "give exactly one of"),
        ("{database: city.mmdb}", "{asn: 64500, prefer: [par]}", "needs geoip.asn_database"),
        (None, "{country: FR, prefer: [par]}", "needs geoip.database"),
        ("{database: city.mmdb}", "{default: true, prefer: nearest}", "none for: lon"),
    ],
)
def test_config_errors_name_the_place(tmp_path: Path, geoip: str | None, rule: str, message: str) -> None:
    write(tmp_path / "city.mmdb", NETWORKS)
    (tmp_path / "junk.mmdb").write_bytes(b"\x00" * 4096)
    write_zone(tmp_path, "")
    (tmp_path / "geodns.yaml").write_text(
        "datacenters: {par: {location: {lat: 48.86, lon: 2.35}}, lon: {}}\n"
        + (f"geoip: {geoip}\n" if geoip else "")
        + "pools:\n  web: {policy: geo, members: [{address: 192.0.2.1, dc: par}]}\n"
        f"topology:\n  - {rule}\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "geodns.yaml")
    said = [str(i) for i in info.value.issues]
    assert any(message in s for s in said), said
    assert all(s.startswith(str(tmp_path / "geodns.yaml") + ":") for s in said)


@pytest_asyncio.fixture
async def geo_daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with serving(_config(tmp_path, RULES, asn=True)) as daemon:
        yield daemon


async def _www(daemon: Daemon, client: str) -> tuple[set[str], int | None]:
    bound = daemon.dns_bound()[0]
    net = ipaddress.ip_network(f"{client}/{24 if ':' not in client else 56}", strict=False)
    ecs = dns.edns.ECSOption(str(net.network_address), net.prefixlen)
    reply = await ask(Endpoint(bound.host, bound.port), "www.example.test.", "A", options=[ecs])
    scope = next((o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)), None)
    return {rd.to_text() for rrset in reply.answer for rd in rrset}, scope


@pytest.mark.asyncio
async def test_answers_over_real_sockets_follow_the_rules_and_the_nearest_live_datacenter(
    geo_daemon: Daemon,
) -> None:
    assert await _www(geo_daemon, "81.2.69.7") == ({"192.0.2.1"}, 25)  # France -> par
    assert await _www(geo_daemon, "13.1.2.3") == ({"192.0.2.3"}, 8)  # US -> nyc
    assert await _www(geo_daemon, "81.7.0.1") == ({"192.0.2.2"}, 14)  # Europe -> ams
    assert (await _www(geo_daemon, "1.2.3.4"))[0] == {"192.0.2.3"}  # Sydney: nyc is nearest
    geo_daemon.add_override("dc=nyc", "down", "burning", None)
    assert (await _www(geo_daemon, "1.2.3.4"))[0] == {"192.0.2.2"}  # then ams, the next nearest
    assert (await _www(geo_daemon, "13.1.2.3"))[0] == {"192.0.2.1"}  # US falls to the pool's order: par


def test_geoip_and_explain_commands_say_what_the_database_says(tmp_path: Path) -> None:
    _config(tmp_path, RULES, asn=True)
    run = run_geodns("geoip", "1.2.3.4", "-c", "geodns.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "1.2.3.4: country AU, continent OC, at -33.87, 151.20 (database network /8)",
        "  nyc: 15,989 km",
        "  ams: 16,643 km",
        "  par: 16,960 km",
        "rule: default -> nearest; the same for every address in /8 (ECS scope)",
    ]
    asn = run_geodns("geoip", "81.2.69.7", "-c", "geodns.yaml", "--json", cwd=tmp_path)
    doc = json.loads(asn.stdout)
    assert doc["database"]["asn"] == 64500 and doc["rule"] == "country BE,FR -> par" and doc["scope"] == 25
    explained = run_geodns(
        "explain", "www.example.test", "--offline", "--ecs", "13.1.0.0/16", "-c", "geodns.yaml", cwd=tmp_path
    )
    assert explained.returncode == 0, explained.stderr
    assert "  GeoIP: country US, continent NA, subdivision US-NY, at 40.71, -74.00 (database network /8)" in (
        explained.stdout
    )
    assert "  topology rule country US -> nyc" in explained.stdout and "ECS scope: /8" in explained.stdout
    bad = run_geodns("geoip", "not-an-ip", "-c", "geodns.yaml", cwd=tmp_path)
    assert bad.returncode == 2 and "is not an IP address" in bad.stderr


@pytest.mark.asyncio
async def test_a_database_replaced_on_disk_is_read_without_dropping_a_query(tmp_path: Path) -> None:
    path = _config(tmp_path, RULES, asn=True)
    path.write_text(
        path.read_text().replace("asn_database: asn.mmdb}", "asn_database: asn.mmdb, watch_interval: 200ms}")
    )
    async with serving(path) as daemon:
        assert (await _www(daemon, "1.2.3.4"))[0] == {"192.0.2.3"}  # Sydney: nyc, the nearest
        # geoipupdate's way: a new file renamed over the old one. 1/8 is now in France.
        moved = {**NETWORKS, "1.0.0.0/8": city("FR", "EU", 48.86, 2.35)}
        write(tmp_path / "city.mmdb.new", moved).rename(tmp_path / "city.mmdb")
        answers = set()
        for _ in range(100):  # queries all along: none may fail while the reader changes
            found, _scope = await _www(daemon, "1.2.3.4")
            answers.add(frozenset(found))
            if found == {"192.0.2.1"}:
                break
            await asyncio.sleep(0.05)
        assert frozenset({"192.0.2.1"}) in answers  # France -> par
        # A corrupt replacement is refused, and the last good database keeps answering.
        (tmp_path / "junk").write_bytes(b"\x00" * 1024)
        (tmp_path / "junk").rename(tmp_path / "city.mmdb")
        await asyncio.sleep(0.8)
        assert (await _www(daemon, "1.2.3.4"))[0] == {"192.0.2.1"}
        assert daemon.metrics_registry.registry.get_sample_value("geodns_last_reload_successful") == 0


MAXMIND_TESTS = "maxminddb-test-databases"


@pytest.fixture(scope="session")
def maxmind(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MaxMind's own test databases, from the maxminddb source distribution on the
    package index (not committed). Outside CI, skip when the index is unreachable."""
    where = tmp_path_factory.mktemp(MAXMIND_TESTS)
    got = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(where),
            "maxminddb",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    archives = list(where.glob("maxminddb-*.tar.gz"))
    if got.returncode != 0 or not archives:
        if os.environ.get("GEODNS_REQUIRE_TOOLS") == "1":
            pytest.fail(f"cannot fetch the maxminddb sdist: {got.stderr[-300:]}")
        pytest.skip(f"the maxminddb sdist is not reachable here: {got.stderr.strip()[-200:]}")
    with tarfile.open(archives[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith("-Test.mmdb") and "/test-data/" in m.name]
        for member in members:
            member.name = Path(member.name).name
            tar.extract(member, where, filter="data")
    return where


def test_maxminds_own_test_databases(maxmind: Path) -> None:
    """GeoIP2-City-Test and GeoLite2-ASN-Test as real databases: the fields geodns reads
    are where it looks for them."""
    database = GeoDatabase(maxmind / "GeoIP2-City-Test.mmdb", maxmind / "GeoLite2-ASN-Test.mmdb")
    london = database.lookup(ipaddress.ip_address("81.2.69.142"))
    assert (london.country, london.continent) == ("GB", "EU") and london.location is not None
    assert london.prefix >= 16
    assert distance_km(london.location, (51.5, -0.13)) < 100
    boxford = database.lookup(ipaddress.ip_address("2.125.160.216"))
    assert boxford.country == "GB" and boxford.subdivisions[:1] == ("GB-ENG",)
    assert database.lookup(ipaddress.ip_address("1.128.0.0")).asn == 1221  # Telstra, in the ASN test data
    nowhere = database.lookup(ipaddress.ip_address("10.0.0.1"))
    assert nowhere.country is None and nowhere.prefix > 0
    country_only = GeoDatabase(maxmind / "GeoLite2-Country-Test.mmdb").lookup(
        ipaddress.ip_address("81.2.69.142")
    )
    assert country_only.country == "GB" and country_only.location is None


@pytest.mark.asyncio
async def test_answers_are_counted_by_rule_and_the_datacenter_it_led_with(geo_daemon: Daemon) -> None:
    for client in ("81.2.69.7", "81.2.68.9", "13.1.2.3", "1.2.3.4", "1.9.9.9"):
        await _www(geo_daemon, client)
    await _www(geo_daemon, "81.2.69.7")  # again: replayed from the cache, counted too

    def count(rule: str, dc: str) -> float | None:
        return geo_daemon.metrics_registry.registry.get_sample_value(
            "geodns_geo_answers_total", {"rule": rule, "datacenter": dc}
        )

    assert count("country BE,FR -> par", "par") == 2  # 81.2.69.7 twice (81.2.68.9: continent EU)
    assert count("continent EU -> ams", "ams") == 1
    assert count("country US -> nyc", "nyc") == 1
    assert count("default -> nearest", "nyc") == 2  # Sydney's nearest


@pytest.mark.asyncio
async def test_a_datacenter_killed_mid_test_moves_each_client_to_its_next_nearest(tmp_path: Path) -> None:
    members = {"par": "127.0.0.91", "ams": "127.0.0.92", "nyc": "127.0.0.93"}
    async with backends_on(*members.values()) as backends:
        path = _config(tmp_path, "  - {default: true, prefer: nearest}\n")
        text = path.read_text()
        for dc, address in members.items():
            text = text.replace(f"192.0.2.{'123'[['par', 'ams', 'nyc'].index(dc)]}", address)
        port = backends[members["par"]].port
        text = text.replace(
            "pools:\n  web:\n",
            f"checks: {{web: {{type: http, port: {port}, path: /, interval: 200ms, timeout: 150ms,"
            " rise: 1, fall: 1, jitter: 0s}}\npools:\n  web:\n    check: web\n",
        )
        path.write_text(text)
        async with serving(path) as daemon:
            sydney, toulouse = "1.2.3.4", "81.2.69.7"
            assert (await _www(daemon, sydney))[0] == {members["nyc"]}
            assert (await _www(daemon, toulouse))[0] == {members["par"]}
            await backends[members["nyc"]].stop()  # New York's backend dies
            await until(
                lambda: (
                    daemon.monitor.states
                    and any(
                        h.status.value == "down"
                        for k, h in daemon.monitor.states.items()
                        if k.address == members["nyc"]
                    )
                ),
                5,
                "nyc to go down",
            )
            assert (await _www(daemon, sydney))[0] == {members["ams"]}  # Sydney's next nearest
            assert (await _www(daemon, toulouse))[0] == {members["par"]}  # Toulouse untouched
            await backends[members["par"]].stop()
            await until(
                lambda: any(
                    h.status.value == "down"
                    for k, h in daemon.monitor.states.items()
                    if k.address == members["par"]
                ),
                5,
                "par to go down",
            )
            assert (await _www(daemon, toulouse))[0] == {members["ams"]}  # Toulouse's next nearest


ISO_CODES = Path("/usr/share/iso-codes/json")


def test_the_embedded_iso_lists_match_the_iso_codes_data() -> None:
    """geoip/isocodes.py was generated from Debian's iso-codes: it must still say the same."""
    if not (ISO_CODES / "iso_3166-2.json").exists():
        if os.environ.get("GEODNS_REQUIRE_TOOLS") == "1":
            pytest.fail("iso-codes is not installed (.ci/run installs it)")
        pytest.skip("needs Debian's iso-codes package")
    countries = {c["alpha_2"] for c in json.loads((ISO_CODES / "iso_3166-1.json").read_text())["3166-1"]}
    subdivisions = {s["code"] for s in json.loads((ISO_CODES / "iso_3166-2.json").read_text())["3166-2"]}
    assert countries == set(isocodes.COUNTRIES)
    assert subdivisions == set(isocodes.SUBDIVISIONS)
