"""Pool policies as pure functions over a snapshot: table and property tests."""

from __future__ import annotations

import collections
import ipaddress
import random
from pathlib import Path

import pytest

from geodns.config import Config, load
from geodns.config.model import TopologyRule
from geodns.dns.answer import Client
from geodns.health.health import Status
from geodns.health.overrides import Override
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.geochoice import match_rule
from geodns.steering.policy import PolicySource, decide
from geodns.zone.zone import PoolRRset, RType
from tests.configs import snapshot, write_zone

CONFIG = """\
server: {dns_listen: ["127.0.0.1:0"], http_listen: null}
datacenters: {par: {}, ams: {}, nyc: {}}
checks:
  web: {type: http, port: 80}
pools:
  fo:
    check: web
    policy: failover
    datacenters: [par, ams, nyc]
    degraded_ttl: 5
    ttl: 60
    members:
      - {address: 10.0.1.1, dc: par}
      - {address: 10.0.1.2, dc: par}
      - {address: 10.0.2.1, dc: ams}
      - {address: 10.0.3.1, dc: nyc}
  fo-half:
    check: web
    min_healthy: "50%"
    datacenters: [par, ams]
    members:
      - {address: 10.0.1.1, dc: par}
      - {address: 10.0.1.2, dc: par}
      - {address: 10.0.1.3, dc: par}
      - {address: 10.0.2.1, dc: ams}
  wt:
    check: web
    policy: weighted
    max_answers: 1
    members:
      - {address: 10.0.1.1, dc: par, weight: 3}
      - {address: 10.0.2.1, dc: ams, weight: 1}
      - {address: 10.0.3.1, dc: nyc, weight: 0}
  everyone:
    check: web
    policy: all
    max_answers: 2
    members:
      - {address: 10.0.1.1, dc: par}
      - {address: 10.0.2.1, dc: ams}
      - {address: 10.0.3.1, dc: nyc}
  geo:
    check: web
    policy: geo
    datacenters: [par, ams, nyc]
    members:
      - {address: 10.0.1.1, dc: par}
      - {address: 10.0.2.1, dc: ams}
      - {address: 10.0.3.1, dc: nyc}
  empty: {check: web, fallback: empty, members: [{address: 10.0.1.1, dc: par}]}
  fail: {check: web, fallback: servfail, members: [{address: 10.0.1.1, dc: par}]}
  chain: {check: web, fallback: "pool:backup", members: [{address: 10.0.1.9, dc: par}]}
  backup: {check: web, members: [{address: 10.0.9.9, dc: nyc}]}
topology:
  - {match: 198.51.100.0/24, prefer: [ams]}
  - {match: 198.51.100.128/25, prefer: [nyc]}
  - {match: 203.0.113.0/24, prefer: [nyc, ams]}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    tmp: Path = tmp_path_factory.mktemp("policy")
    write_zone(tmp)
    (tmp / "geodns.yaml").write_text(CONFIG)
    return load(tmp / "geodns.yaml")


def answer(
    config: Config,
    snap: HealthSnapshot,
    pool: str,
    client: str = "192.0.2.1",
    ecs_prefix: int | None = None,
    seed: int = 1,
) -> tuple[list[str], int | None, int | None]:
    source = PolicySource(config, snap, random.Random(seed))
    entry = PoolRRset(("www", "example", "test"), int(RType.A), 60, pool)
    result = source.select(entry, Client(client, ecs_prefix, client))
    if result.servfail:
        return ["SERVFAIL"], None, result.ecs_scope
    assert result.rrset is not None
    return [a.text for a in result.rrset.rdatas], result.rrset.ttl, result.ecs_scope  # type: ignore[union-attr]


def test_failover_follows_preference(config: Config) -> None:
    assert answer(config, snapshot(config), "fo")[:2] == (["10.0.1.1", "10.0.1.2"], 60)
    # One par member down: par still qualifies (min_healthy 1); the pool is degraded -> short TTL.
    assert answer(config, snapshot(config, {"10.0.1.1"}), "fo")[:2] == (["10.0.1.2"], 5)
    assert answer(config, snapshot(config, {"10.0.1.1", "10.0.1.2"}), "fo")[0] == ["10.0.2.1"]
    assert answer(config, snapshot(config, {"10.0.1.1", "10.0.1.2", "10.0.2.1"}), "fo")[0] == ["10.0.3.1"]
    # Everything down: fallback all (fail open), never an empty answer by surprise.
    all_down = {"10.0.1.1", "10.0.1.2", "10.0.2.1", "10.0.3.1"}
    assert answer(config, snapshot(config, all_down), "fo")[0] == [
        "10.0.1.1",
        "10.0.1.2",
        "10.0.2.1",
        "10.0.3.1",
    ]


def test_min_healthy_fraction(config: Config) -> None:
    assert answer(config, snapshot(config, {"10.0.1.1"}), "fo-half")[0] == ["10.0.1.2", "10.0.1.3"]
    # 1 of 3 up in par is below 50%: ams takes over.
    assert answer(config, snapshot(config, {"10.0.1.1", "10.0.1.2"}), "fo-half")[0] == ["10.0.2.1"]
    # ams down too: better the one healthy par member than failing open to dead ones.
    d = decide(config, snapshot(config, {"10.0.1.1", "10.0.1.2", "10.0.2.1"}), "fo-half", False, None)
    assert (d.chosen_dc, [m.address for m in d.candidates]) == ("par", ["10.0.1.3"])
    assert d.notes


def test_weighted_distribution_and_standby(config: Config) -> None:
    snap = snapshot(config)
    source = PolicySource(config, snap, random.Random(7))
    entry = PoolRRset(("w",), int(RType.A), 60, "wt")
    counts = collections.Counter(
        source.select(entry, Client("192.0.2.1")).rrset.rdatas[0].text  # type: ignore[union-attr]
        for _ in range(4000)
    )
    assert set(counts) == {"10.0.1.1", "10.0.2.1"}  # the standby never answers while others are up
    assert 2.5 < counts["10.0.1.1"] / counts["10.0.2.1"] < 3.6  # weights 3:1
    assert answer(config, snapshot(config, {"10.0.1.1", "10.0.2.1"}), "wt")[0] == ["10.0.3.1"]


def test_all_is_shuffled_and_capped(config: Config) -> None:
    seen = {tuple(answer(config, snapshot(config), "everyone", seed=s)[0]) for s in range(50)}
    assert all(len(a) == 2 for a in seen)
    assert len(seen) > 3  # different pairs and orders
    assert answer(config, snapshot(config, {"10.0.1.1", "10.0.2.1"}), "everyone")[0] == ["10.0.3.1"]


@pytest.mark.parametrize(
    ("client", "prefix", "expected", "scope"),
    [
        ("198.51.100.7", 32, "10.0.2.1", 25),  # /24 rule -> ams; the /25 beside it limits the scope
        ("198.51.100.200", 32, "10.0.3.1", 25),  # the more specific /25 -> nyc
        ("198.51.100.0", 24, "10.0.2.1", 25),  # ECS /24: scope can be longer than the source
        ("203.0.113.9", 24, "10.0.3.1", 24),
        ("192.0.2.1", 24, "10.0.1.1", 6),  # no rule: pool order, true for all of 192.0.0.0/6
    ],
)
def test_geo_steering_and_scope(config: Config, client: str, prefix: int, expected: str, scope: int) -> None:
    got, _, ecs_scope = answer(config, snapshot(config), "geo", client, prefix)
    assert got == [expected]
    assert ecs_scope == scope


def test_scope_is_exact() -> None:
    """Property: every address inside client/scope gets the same rule as the client."""
    rng = random.Random(3)
    for _ in range(200):
        rules = []
        for _ in range(rng.randint(1, 6)):
            plen = rng.randint(4, 28)
            net = ipaddress.ip_network((rng.getrandbits(32) >> (32 - plen) << (32 - plen), plen))
            rules.append(TopologyRule(net, ("par",)))
        client = ipaddress.IPv4Address(rng.getrandbits(32))
        rule, scope = match_rule(rules, client)
        block = ipaddress.ip_network((int(client) >> (32 - scope) << (32 - scope), scope)) if scope else None
        for _ in range(30):
            other = ipaddress.IPv4Address(
                int(block.network_address) + rng.randrange(block.num_addresses)
                if block
                else rng.getrandbits(32)
            )
            assert match_rule(rules, other)[0] is rule


def test_geo_ignores_ecs_when_told(config: Config, tmp_path: Path) -> None:
    text = CONFIG.replace("    policy: geo\n", "    policy: geo\n    ecs: ignore\n")
    write_zone(tmp_path)
    (tmp_path / "geodns.yaml").write_text(text)
    cfg = load(tmp_path / "geodns.yaml")
    source = PolicySource(cfg, snapshot(cfg), random.Random(1))
    entry = PoolRRset(("w",), int(RType.A), 60, "geo")
    # The ECS says 203.0.113.0/24 (-> nyc) but the packet came from 198.51.100.7 (-> ams).
    result = source.select(entry, Client("203.0.113.0", 24, "198.51.100.7"))
    assert [a.text for a in result.rrset.rdatas] == ["10.0.2.1"]  # type: ignore[union-attr]
    assert result.ecs_scope is None  # the answer does not depend on the ECS: no scope claimed


def test_fallback_modes(config: Config) -> None:
    assert answer(config, snapshot(config, {"10.0.1.1"}), "empty")[0] == []
    assert answer(config, snapshot(config, {"10.0.1.1"}), "fail")[0] == ["SERVFAIL"]
    assert answer(config, snapshot(config, {"10.0.1.9"}), "chain")[0] == ["10.0.9.9"]
    # The chain's end fails open when it is down too.
    assert answer(config, snapshot(config, {"10.0.1.9", "10.0.9.9"}), "chain")[0] == ["10.0.9.9"]


def test_overrides_precedence(config: Config) -> None:
    dc_down = Override("dc", "par", Status.DOWN, "power", 1.0)
    assert answer(config, snapshot(config, overrides=(dc_down,)), "fo")[0] == ["10.0.2.1"]
    # A member forced up wins over its datacenter's drain (more specific).
    member_up = Override("member", "10.0.1.2", Status.UP, "canary", 2.0)
    assert answer(config, snapshot(config, overrides=(dc_down, member_up)), "fo")[0] == ["10.0.1.2"]
    # Forced up even though the probes say down.
    assert answer(config, snapshot(config, {"10.0.1.2"}, (dc_down, member_up)), "fo")[0] == ["10.0.1.2"]
    # A pool drain takes every member of that pool, in every datacenter.
    pool_down = Override("pool", "fo", Status.DOWN, "maintenance", 3.0)
    assert answer(config, snapshot(config, overrides=(pool_down,)), "fo")[0] == [
        "10.0.1.1",
        "10.0.1.2",
        "10.0.2.1",
        "10.0.3.1",
    ]  # everything down: fallback all
    d = decide(config, snapshot(config, overrides=(dc_down,)), "fo", False, None)
    par = [v for v in d.members if v.member.dc == "par"]
    assert all(v.real is Status.UP and v.effective is Status.DOWN and v.forced_by == dc_down for v in par)
