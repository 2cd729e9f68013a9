"""A health change drops only the cached answers it changes.

The answer cache lives on from one snapshot to the next; the answers of pools
whose decision changed are dropped, everything else (static names, other pools,
a standby datacenter's flapping) stays. The property that matters most: after
any sequence of snapshots, the carried cache answers exactly what a fresh one
would.
"""

from __future__ import annotations

import random
from pathlib import Path

import dns.edns
import dns.message
import pytest
from dns.message import Message

from geodns.config import Config, load
from geodns.dns.fastcache import fold
from geodns.dns.fastpath import answer
from geodns.dns.handler import ServingState, Stats
from geodns.health.health import Status
from geodns.health.overrides import Override
from geodns.health.snapshot import HealthSnapshot
from geodns.serving import next_state, serving_state
from geodns.steering.changes import changed_pools
from tests.configs import snapshot, write_zone

CONFIG = """\
datacenters: {par: {}, ams: {}, fra: {}}
checks: {web: {type: tcp, port: 80, interval: 1s, timeout: 500ms}}
topology:
  - {match: 198.51.100.0/24, prefer: [ams]}
  - {match: 203.0.113.0/24, prefer: [fra]}
pools:
  fo:
    check: web
    policy: failover
    datacenters: [par, ams]
    members:
      - {address: 192.0.2.11, dc: par}
      - {address: 192.0.2.12, dc: par}
      - {address: 192.0.2.21, dc: ams}
  short:
    check: web
    policy: failover
    degraded_ttl: 5
    datacenters: [par, ams]
    members:
      - {address: 192.0.2.31, dc: par}
      - {address: 192.0.2.32, dc: ams}
  geo:
    check: web
    policy: geo
    datacenters: [par, ams, fra]
    members:
      - {address: 192.0.2.41, dc: par}
      - {address: 192.0.2.42, dc: ams}
      - {address: 192.0.2.43, dc: fra}
  last:
    check: web
    datacenters: [fra]
    members: [{address: 192.0.2.51, dc: fra}, {address: 192.0.2.52, dc: fra}]
  chained:
    check: web
    fallback: pool:last
    datacenters: [par]
    members: [{address: 192.0.2.61, dc: par}]
"""
RECORDS = """\
  www: {type: A, value: 192.0.2.1}
  fo: {type: A, pool: fo}
  short: {type: A, pool: short}
  geo: {type: A, pool: geo}
  chained: {type: A, pool: chained}
  alias: {type: CNAME, value: fo}
  mx: {type: MX, value: "10 fo"}
  "*.w": {type: CNAME, value: geo}
"""
ADDRESSES = [f"192.0.2.{n}" for n in (11, 12, 21, 31, 32, 41, 42, 43, 51, 52, 61)]
NAMES = ["www", "fo", "short", "geo", "chained", "alias", "mx", "nope"]
SOURCES = ["127.0.0.1", "198.51.100.7", "203.0.113.9"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root: Path = tmp_path_factory.mktemp("invalidation")
    write_zone(root, RECORDS)
    (root / "geodns.yaml").write_text(CONFIG)
    return load(root / "geodns.yaml")


def _query(name: str, qtype: str = "A", ecs: str | None = None) -> bytes:
    options: list[dns.edns.Option] = []
    if ecs is not None:
        options.append(dns.edns.ECSOption(ecs, 24))
    q = dns.message.make_query(f"{name}.example.test.", qtype, use_edns=0, options=options)
    return q.to_wire()


def _ask(state: ServingState, wire: bytes, source: str = "127.0.0.1", udp: bool = True) -> Message:
    reply = answer(wire, source, udp, state, Stats())
    assert reply is not None
    return dns.message.from_wire(reply)


def _cached(state: ServingState, wire: bytes) -> bool:
    """Whether any key this query is found under holds an answer."""
    folded = fold(wire, state.edns_udp_size)
    assert folded is not None
    return any(k in state.cache.udp for k in (wire[2:], folded.universal, folded.exact))


def _same(a: Message, b: Message) -> bool:
    # RRsets compare as sets of records: the order within one is not part of the answer.
    return (
        a.rcode() == b.rcode()
        and a.flags == b.flags
        and a.answer == b.answer
        and a.authority == b.authority
        and a.additional == b.additional
        and [r.ttl for r in a.answer] == [r.ttl for r in b.answer]
    )


def test_a_standby_flapping_behind_a_healthy_primary_changes_nothing(config: Config) -> None:
    calm = snapshot(config)
    assert changed_pools(config, calm, snapshot(config, {"192.0.2.21"})) == set()
    # With degraded_ttl, a standby's fall changes the TTL everyone is told.
    assert changed_pools(config, calm, snapshot(config, {"192.0.2.32"})) == {"short"}
    # A primary member's fall changes what the pool answers.
    assert changed_pools(config, calm, snapshot(config, {"192.0.2.11"})) == {"fo"}
    # A geo pool: any datacenter is some rule's first choice.
    assert changed_pools(config, calm, snapshot(config, {"192.0.2.43"})) == {"geo"}
    # A fallback pool changes on its own; the pool that falls back to it changes only
    # when it starts or stops falling back (its answers name `last` as a dependency).
    assert changed_pools(config, calm, snapshot(config, {"192.0.2.51"})) == {"last"}
    assert changed_pools(config, calm, snapshot(config, {"192.0.2.61"})) == {"chained"}


def test_a_new_reason_or_time_alone_changes_nothing(config: Config) -> None:
    calm = snapshot(config)
    states = dict(calm.states)
    key = next(iter(states))
    states[key] = type(states[key])(status=Status.UP, reason="slow", since=123.0)
    assert changed_pools(config, calm, HealthSnapshot(2, states)) == set()


def test_a_drain_changes_the_pools_it_touches(config: Config) -> None:
    calm = snapshot(config)
    drained = snapshot(config, overrides=(Override("dc", "par", Status.DOWN, "maintenance", 0.0),))
    assert changed_pools(config, calm, drained) == {"fo", "short", "geo", "chained"}


def test_static_answers_and_other_pools_stay_cached_through_a_change(config: Config) -> None:
    state = serving_state(config, snapshot(config))
    stats = Stats()
    wires = {name: _query(name) for name in ("www", "fo", "short", "alias")}
    for wire in wires.values():
        assert answer(wire, "127.0.0.1", True, state, stats) is not None
    for wire in wires.values():  # twice: the second is a hit that also keeps the exact bytes
        assert answer(wire, "127.0.0.1", True, state, stats) is not None
    assert stats.cache_hits == 4 and all(_cached(state, w) for w in wires.values())

    state = next_state(config, state, snapshot(config, {"192.0.2.11", "192.0.2.12"}))
    # `fo` changed: its name and the alias leading to it are gone; the rest stay.
    assert not _cached(state, wires["fo"]) and not _cached(state, wires["alias"])
    assert _cached(state, wires["www"]) and _cached(state, wires["short"])
    assert state.cache.invalidated == 4  # each under its folded and its exact key
    fo = _ask(state, wires["fo"])
    assert [r.address for r in fo.answer[0]] == ["192.0.2.21"]

    hits = Stats()
    answer(wires["www"], "127.0.0.1", True, state, hits)
    assert hits.cache_hits == 1  # the static answer outlived the change


def test_a_fallback_chain_drops_answers_that_went_through_the_changed_pool(config: Config) -> None:
    state = serving_state(config, snapshot(config, {"192.0.2.61"}))  # chained falls back to last
    wire = _query("chained")
    first = _ask(state, wire)
    assert {r.address for r in first.answer[0]} == {"192.0.2.51", "192.0.2.52"}
    state = next_state(config, state, snapshot(config, {"192.0.2.61", "192.0.2.51"}))
    assert not _cached(state, wire)
    assert {r.address for r in _ask(state, wire).answer[0]} == {"192.0.2.52"}


def test_evicted_keys_leave_no_dependency_behind(config: Config) -> None:
    state = serving_state(config, snapshot(config))
    small = type(state)(state.zones, state.pools, state.nsid, state.edns_udp_size, type(state.cache)(3000))
    for i in range(300):
        # Unique names (a wildcard CNAME to a geo pool): each a new key, most soon evicted.
        answer(_query(f"n{i}.w", ecs=f"10.{i // 256}.{i % 256}.0"), "127.0.0.1", True, small, Stats())
    deps = small.cache.deps[True]
    assert small.cache.evictions > 250
    assert set(deps.of_key) <= set(small.cache.udp)
    assert all(keys <= set(small.cache.udp) for keys in deps.by_pool.values())


def _random_snapshot(config: Config, rng: random.Random, version: int) -> HealthSnapshot:
    down = {a for a in ADDRESSES if rng.random() < 0.3}
    overrides: tuple[Override, ...] = ()
    if rng.random() < 0.2:
        kind, name = rng.choice([("dc", "par"), ("dc", "ams"), ("pool", "fo"), ("member", "192.0.2.41")])
        overrides = (Override(kind, name, rng.choice([Status.UP, Status.DOWN]), "test", 0.0),)
    made = snapshot(config, down, overrides)
    return HealthSnapshot(version, made.states, made.overrides)


@pytest.mark.parametrize("seed", range(4))
def test_the_carried_cache_answers_as_a_fresh_one_would(config: Config, seed: int) -> None:
    rng = random.Random(seed)
    queries = [
        (_query(name, qtype, ecs), source, udp)
        for name in NAMES
        for qtype in ("A", "MX" if name == "mx" else "AAAA")
        for ecs in (None, "198.51.100.0", "203.0.113.0")
        for source in SOURCES
        for udp in (True, False)
    ]
    carried = serving_state(config, _random_snapshot(config, rng, 1))
    for version in range(2, 60):
        shot = _random_snapshot(config, rng, version)
        carried = next_state(config, carried, shot)
        fresh = serving_state(config, shot)
        for wire, source, udp in rng.sample(queries, 40):
            got, want = _ask(carried, wire, source, udp), _ask(fresh, wire, source, udp)
            assert _same(got, want), (version, dns.message.from_wire(wire).question, source, got, want)
    assert carried.cache.invalidated > 0 and carried.cache.entries() > 0


def test_a_reload_starts_a_new_cache(config: Config, tmp_path: Path) -> None:
    state = serving_state(config, snapshot(config))
    answer(_query("www"), "127.0.0.1", True, state, Stats())
    write_zone(tmp_path, RECORDS)
    (tmp_path / "geodns.yaml").write_text(CONFIG)
    reloaded = load(tmp_path / "geodns.yaml")
    assert next_state(reloaded, state, snapshot(reloaded)).cache is not state.cache


def test_ecs_answers_are_kept_per_decision_not_per_subnet(config: Config) -> None:
    """300 client /24s, three topology outcomes: three replies kept, each replayed
    with the asking client's own subnet and the decision's scope."""
    state = serving_state(config, snapshot(config))
    subnets = [f"10.{i // 256}.{i % 256}.0" for i in range(300)]
    subnets += ["198.51.100.0", "203.0.113.0"]
    for subnet in subnets:
        answer(_query("geo", ecs=subnet), "127.0.0.1", True, state, Stats())
    assert state.cache.entries() <= 4  # one key (the address stripped), one reply per decision
    for subnet, want in (
        ("10.1.2.0", "192.0.2.41"),
        ("198.51.100.0", "192.0.2.42"),
        ("203.0.113.0", "192.0.2.43"),
    ):
        wire = _query("geo", ecs=subnet)
        stats = Stats()
        reply = dns.message.from_wire(answer(wire, "127.0.0.1", True, state, stats) or b"")
        assert stats.cache_hits == 1
        assert [rd.address for rd in reply.answer[0]] == [want]
        (option,) = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
        assert option.address == subnet and option.srclen == 24
        fresh = dns.message.from_wire(
            answer(wire, "127.0.0.1", True, serving_state(config, snapshot(config)), Stats()) or b""
        )
        assert reply.to_wire()[2:] == fresh.to_wire()[2:]  # byte for byte what the full path says


def test_the_ecs_shortcut_checks_stray_bits_and_serves_ipv6(config: Config) -> None:
    """After the first fold, ECS /24 and /56 queries are found without one; a subnet
    with bits set past its prefix still gets FORMERR, and IPv6 replays byte for byte."""
    state = serving_state(config, snapshot(config))

    def ask(subnet: str, prefix: int) -> dns.message.Message:
        q = dns.message.make_query(
            "geo.example.test.", "A", use_edns=0, options=[dns.edns.ECSOption(subnet, prefix)]
        )
        reply = answer(q.to_wire(), "127.0.0.1", True, state, Stats())
        assert reply is not None
        return dns.message.from_wire(reply)

    for subnet in ("10.1.0.0", "10.2.4.0"):
        assert ask(subnet, 22).rcode() == dns.rcode.NOERROR  # the second one finds the alias
    wire = bytearray(
        dns.message.make_query(
            "geo.example.test.", "A", use_edns=0, options=[dns.edns.ECSOption("10.1.0.0", 22)]
        ).to_wire()
    )
    wire[-1] |= 0x01  # a bit past /22: RFC 7871 says FORMERR
    reply = answer(bytes(wire), "127.0.0.1", True, state, Stats())
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR
    first, second = ask("2001:db8:1::", 56), ask("2001:db8:2::", 56)
    fresh = serving_state(config, snapshot(config))
    for got, subnet in ((first, "2001:db8:1::"), (second, "2001:db8:2::")):
        q = dns.message.make_query(
            "geo.example.test.", "A", use_edns=0, options=[dns.edns.ECSOption(subnet, 56)]
        )
        want = dns.message.from_wire(answer(q.to_wire(), "127.0.0.1", True, fresh, Stats()) or b"")
        assert got.to_wire()[2:] == want.to_wire()[2:]
