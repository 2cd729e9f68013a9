"""Compiled zones: a restart reads the cache, any change to the input reads YAML."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from geodns.config import load, recordlines, zonesdir
from geodns.errors import ConfigError, Issue
from geodns.startup import zone_compiler
from geodns.zone.zone import Address, RRset, new_address, new_rrset
from tests.conftest import copy_test_config


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return copy_test_config(tmp_path)


def mail_ttl(path: Path) -> int:
    zone = load(path, use_cache=True).zones.zones[("example", "test")]
    rrset = zone.nodes[("mail", "example", "test")][1]
    assert isinstance(rrset, RRset)
    return rrset.ttl


def test_a_second_load_comes_from_the_cache(cfg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load(cfg, use_cache=True)
    assert len(list((cfg.parent / "state" / "zonecache").glob("*.zone"))) == 3

    def no_yaml(*_args: object, **_kw: object) -> None:
        raise AssertionError("YAML was read although the cache had the zone")

    monkeypatch.setattr(zonesdir, "load_zone_text", no_yaml)
    second = load(cfg, use_cache=True)
    assert second.zones == first.zones


def test_a_changed_zone_file_or_pool_is_read_again(cfg: Path) -> None:
    assert mail_ttl(cfg) == 3600
    zone_file = cfg.parent / "zones" / "example.test.yaml"
    zone_file.write_text(
        zone_file.read_text().replace(
            "mail: {type: A, value: 192.0.2.25}", "mail: {type: A, value: 192.0.2.25, ttl: 42}"
        )
    )
    assert mail_ttl(cfg) == 42
    # Pool settings shape pool-backed records: a change there is a miss too.
    cfg.write_text(cfg.read_text().replace("    ttl: 30\n", "    ttl: 31\n"))
    www = load(cfg, use_cache=True).zones.zones[("example", "test")].nodes[("www", "example", "test")][1]
    assert www.ttl == 31
    # Old entries are dropped as new ones are written.
    assert len(list((cfg.parent / "state" / "zonecache").glob("*.zone"))) == 3


def test_a_broken_cache_file_falls_back_to_yaml(cfg: Path) -> None:
    load(cfg, use_cache=True)
    for entry in (cfg.parent / "state" / "zonecache").glob("*.zone"):
        entry.write_bytes(b"not a pickle")
    assert mail_ttl(cfg) == 3600


def test_invalid_zones_are_never_cached(cfg: Path) -> None:
    zone_file = cfg.parent / "zones" / "other.test.yaml"
    zone_file.write_text(zone_file.read_text().replace("type: A", "type: B"))
    with pytest.raises(Exception, match="unsupported record type"):
        load(cfg, use_cache=True)
    with pytest.raises(Exception, match="unsupported record type"):
        load(cfg, use_cache=True)  # the error again, not a cached half-zone


def test_the_cache_is_data_only_a_planted_pickle_never_runs(cfg: Path, tmp_path: Path) -> None:
    """The cache used to be a pickle: a planted file ran a command on the next
    start. Now a cache file is JSON read field by field; a pickle in its place is
    just an unreadable cache, and the YAML is read instead."""
    import os
    import pickle

    load(cfg, use_cache=True)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    for entry in (cfg.parent / "state" / "zonecache").glob("*.zone"):
        entry.write_bytes(pickle.dumps(Payload()))
    assert mail_ttl(cfg) == 3600
    assert not marker.exists()


def test_a_tampered_cache_fails_its_checksum(cfg: Path, caplog: pytest.LogCaptureFixture) -> None:
    load(cfg, use_cache=True)
    for entry in (cfg.parent / "state" / "zonecache").glob("*.zone"):
        entry.write_text(entry.read_text().replace("192.0.2.25", "203.0.113.66"))
    zone = load(cfg, use_cache=True).zones.zones[("example", "test")]
    assert zone.nodes[("mail", "example", "test")][1] == RRset(
        ("mail", "example", "test"), 1, 3600, (Address("192.0.2.25"),)
    )
    assert "checksum mismatch" in caplog.text


def test_cache_files_are_private_and_others_writable_ones_are_not_used(
    cfg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    load(cfg, use_cache=True)
    folder = cfg.parent / "state" / "zonecache"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list(folder.glob("*.zone"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    # Someone else could have written this one: it is not trusted (the YAML is read).
    files[0].chmod(0o666)
    load(cfg, use_cache=True)
    assert "is writable by others (mode 0666)" in caplog.text


def test_every_record_type_survives_the_cache(cfg: Path) -> None:
    from geodns.config import zonecache

    zones = load(cfg).zones.zones
    for zone in zones.values():
        assert zonecache.decode(zonecache.encode(zone)) == zone


def test_a_big_zone_survives_the_cache_in_chunks_and_a_missing_chunk_is_refused() -> None:
    from geodns.config import zonecache
    from geodns.zone.zone import SOA, Entry, PoolRRset, RType, build_zone

    origin = ("big", "test")
    soa = RRset(origin, int(RType.SOA), 60, (SOA(("ns", *origin), ("h", *origin), 1, 2, 3, 4, 5),))
    entries: list[Entry] = [
        RRset((f"h{i}", "x", *origin), int(RType.A), 30, (Address(f"10.0.{i // 256}.{i % 256}"),))
        for i in range(1000)
    ]
    entries.append(PoolRRset(("www", *origin), int(RType.AAAA), 20, "web"))
    entries.append(
        RRset(("a.b", "c"), int(RType.A), 5, (Address("192.0.2.1"),))
    )  # a dot in a label, out of zone
    zone = build_zone(origin, soa, entries)
    lines = list(zonecache.encode(zone))
    assert len(lines) == 2 + (len(entries) + 1 + zonecache.CHUNK - 1) // zonecache.CHUNK
    assert zonecache.decode(lines) == zone
    assert ("x", *origin) in zonecache.decode(lines).empty_nonterminals
    with pytest.raises(zonecache.BadCache):
        zonecache.decode(lines[:3] + lines[4:])  # a chunk gone: the checksum (or the count) says so
    with pytest.raises(zonecache.BadCache):
        zonecache.decode([*lines[:1], lines[1].replace('"h0.x"', '"h0..x"'), *lines[2:]])


def test_a_big_zone_on_first_start_is_compiled_by_a_child_and_read_from_the_cache(
    cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every zone counts as big here: the start-up load has a real child process
    (geodns.config.compile) fill the cache, and reads no zone YAML itself."""
    expected = load(cfg).zones
    monkeypatch.setattr(zonesdir, "BIG_ZONE", 1)
    parsed_here: list[str] = []
    real = recordlines.load_zone_text

    def spy(text: str, name: str, issues: list[Issue]) -> object:
        parsed_here.append(name)
        return real(text, name, issues)

    monkeypatch.setattr(zonesdir, "load_zone_text", spy)
    config = load(cfg, use_cache=True, compiler=zone_compiler(cfg))
    assert parsed_here == [] and config.zones == expected
    assert len(list((cfg.parent / "state" / "zonecache").glob("*.zone"))) == 3


def test_a_failing_compiler_leaves_the_reading_and_its_problems_to_this_process(
    cfg: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(zonesdir, "BIG_ZONE", 1)
    zone = next((cfg.parent / "zones").glob("*.yaml"))
    zone.write_text(zone.read_text() + "  broken: {type: A, value: 300.1.1.1}\n")
    with pytest.raises(ConfigError) as raised:
        load(cfg, use_cache=True, compiler=zone_compiler(cfg))
    assert any("300.1.1.1" in str(issue) for issue in raised.value.issues)
    assert "the zone compiler exited 2" in caplog.text  # said, and read here instead


def test_bulk_constructors_make_the_same_frozen_objects() -> None:
    made = new_rrset(("h1", "example", "test"), 1, 300, (new_address("192.0.2.1"),))
    built = RRset(("h1", "example", "test"), 1, 300, (Address("192.0.2.1"),))
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.ttl = 1  # type: ignore[misc]
