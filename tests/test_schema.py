"""`geodns schema`: generated from the parser itself, published under deploy/schema/,
accepting every shipped and test config, and agreeing with the loader on broken
ones: a structural mistake the loader reports (an unknown key, a wrong type, an
enum typo, a missing required key, a value out of range) the schema rejects too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from geodns.config import load
from geodns.config.schema import main_schema, zone_schema
from geodns.errors import ConfigError
from tests.conftest import REPO
from tests.daemonproc import run_geodns

PUBLISHED = REPO / "deploy" / "schema"
BAD = REPO / "tests" / "bad_configs"
STRUCTURAL = (
    "unknown key",
    "is not one of",
    "expected ",
    "missing required key",
    "is out of range",
    "bad duration",
)


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(schema: dict[str, Any], path: Path) -> list[str]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(schema).iter_errors(doc)
    ]


def test_the_published_schemas_are_the_generated_ones() -> None:
    for name, schema in (("geodns.schema.json", main_schema()), ("zone.schema.json", zone_schema())):
        published = json.loads((PUBLISHED / name).read_text())
        assert published == schema, f"regenerate: geodns schema{' --zone' if 'zone' in name else ''} > {name}"
    printed = run_geodns("schema", "--zone")
    assert printed.returncode == 0 and json.loads(printed.stdout) == zone_schema()


def test_the_schema_knows_every_key_the_readers_know() -> None:
    schema = main_schema()
    pool = schema["properties"]["pools"]["additionalProperties"]
    assert {"check", "policy", "members", "fallback", "min_healthy"} <= set(pool["properties"])
    member = pool["properties"]["members"]["items"]
    assert member["required"] == ["address", "dc"] and member["additionalProperties"] is False
    assert schema["properties"]["checks"]["additionalProperties"]["properties"]["type"]["enum"] == [
        "http",
        "https",
        "tcp",
        "exec",
    ]
    assert "rate_limit" in schema["properties"]["server"]["properties"]
    assert {"peers", "quorum"} <= set(schema["properties"]["cluster"]["properties"])
    assert schema["properties"]["geoip"]["required"] == ["database"]
    rule = schema["properties"]["topology"]["items"]["properties"]
    assert {"match", "country", "continent", "subdivision", "asn", "default", "prefer"} <= set(rule)
    location = schema["properties"]["datacenters"]["additionalProperties"]["properties"]["location"]
    assert location["required"] == ["lat", "lon"]


def _good_configs() -> list[Path]:
    example = REPO / "geodns" / "example"
    return [
        example / "geodns.yaml",
        *sorted((example / "cluster").glob("*.yaml")),
        REPO / "tests/data/geodns.yaml",
    ]


def _good_zones() -> list[Path]:
    return [
        *sorted((REPO / "geodns/example/zones").glob("*.yaml")),
        *sorted((REPO / "tests/data/zones").glob("*.yaml")),
    ]


@pytest.mark.parametrize("path", _good_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_and_test_configs_validate(path: Path) -> None:
    load(path)  # the loader accepts it...
    assert _errors(main_schema(), path) == []  # ...and so does the schema


@pytest.mark.parametrize("path", _good_zones(), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_and_test_zones_validate(path: Path) -> None:
    assert _errors(zone_schema(), path) == []


def _broken_files() -> list[tuple[str, Path, list[str]]]:
    """(case, file, the loader's structural messages for that file) for every bad config."""
    out = []
    for case in sorted(p for p in BAD.iterdir() if p.is_dir()):
        try:
            load(case / "geodns.yaml")
        except ConfigError as exc:
            by_file: dict[str, list[str]] = {}
            for issue in exc.issues:
                by_file.setdefault(issue.where.file, []).append(issue.message)
            for file, messages in by_file.items():
                path = Path(file) if Path(file).is_absolute() else case / file
                out.append((case.name, path, [m for m in messages if any(k in m for k in STRUCTURAL)]))
    return out


def test_schema_and_loader_agree_on_broken_configs() -> None:
    checked = 0
    for case, path, structural in _broken_files():
        if not structural or not path.exists():
            continue
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # not YAML at all: nothing for a schema to say
        schema = zone_schema() if path.parent.name == "zones" else main_schema()
        errors = list(_validator(schema).iter_errors(doc))
        assert errors, f"{case}: the loader says {structural}, the schema accepts {path.name}"
        checked += 1
    assert checked >= 5  # unknown keys, types, enums, ranges, durations among the cases
