"""No input makes the loader raise anything but a ConfigError with located issues:
deep nesting, aliases, several documents, huge files, and random YAML-like text
for the main file and a zone file alike (hypothesis)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import load, yamlload
from geodns.errors import ConfigError
from tests.daemonproc import run_geodns

MAIN = "datacenters: {par: {}}\npools:\n  web: {members: [{address: 192.0.2.1, dc: par}]}\n"
ZONE_HEAD = (
    "origin: example.test.\nsoa: {mname: ns1.example.test., rname: h.example.test.}\n"
    'records:\n  "@": {type: NS, value: ns1}\n'
)


def _write(folder: Path, main: str, zone: str) -> Path:
    (folder / "zones").mkdir(exist_ok=True)
    (folder / "zones" / "z.yaml").write_text(zone)
    (folder / "geodns.yaml").write_text(main)
    return folder / "geodns.yaml"


def _issues(path: Path) -> list[str]:
    try:
        load(path)
    except ConfigError as exc:
        assert exc.issues, "a ConfigError without issues"
        return [str(issue) for issue in exc.issues]
    return []


@pytest.mark.parametrize("depth", [65, 900, 5000])
def test_deep_nesting_is_a_located_error(tmp_path: Path, depth: int) -> None:
    zone = ZONE_HEAD + "  x: " + "{a: " * depth + "1" + "}" * depth + "\n"
    issues = _issues(_write(tmp_path, MAIN, zone))
    assert any(
        ":5:" in i and ("nested deeper than 64 levels" in i or "nesting depth" in i) for i in issues
    ), issues


def test_check_never_prints_a_traceback_for_deep_yaml(tmp_path: Path) -> None:
    _write(tmp_path, MAIN, ZONE_HEAD + "  x: " + "[" * 900 + "]" * 900 + "\n")
    result = run_geodns("check", "-c", "geodns.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_aliases_and_documents_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    laughs = "".join(
        f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9 if i else ["1"] * 9) + "]\n" for i in range(8)
    )
    issues = _issues(_write(tmp_path, MAIN + laughs, ZONE_HEAD))
    assert any("unknown key 'l0'" in i for i in issues)
    issues = _issues(_write(tmp_path, MAIN + "---\nagain: 1\n", ZONE_HEAD))
    assert any("expected a single YAML document, found another" in i for i in issues)
    monkeypatch.setattr(yamlload, "MAX_CONFIG_BYTES", 64)
    issues = _issues(_write(tmp_path, MAIN, ZONE_HEAD))
    assert issues == [
        f"{tmp_path / 'geodns.yaml'}:1:1: file is {len(MAIN)} bytes, more than the 64 a file may have"
    ]


SYMBOLS = [
    *("a", "b", ":", "-", "[", "]", "{", "}", ",", "&x", "*x", "<<:", "!!str", "!!int"),
    *("'", '"', "#", "?", "@", "`", "\\", "1", "0x1f", "1e400", ".nan", "true", "null", "~"),
]
LAYOUT = [" ", "  ", "\n", "\t", "---\n", "...\n", "|\n", ">\n", "%YAML 1.2\n", "\x00", "\u00e9", "\ufeff"]
WORDS = ["records:", "type: A", "value: ", "pool: web", "origin: x."]
TOKENS = st.sampled_from([*SYMBOLS, *LAYOUT, *WORDS])
documents = st.lists(TOKENS, max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(main=documents, zone=documents)
def test_random_yaml_never_raises_anything_but_config_error(tmp_path: Path, main: str, zone: str) -> None:
    _issues(_write(tmp_path, main, ZONE_HEAD + zone))
    _issues(_write(tmp_path, MAIN + main, zone))
