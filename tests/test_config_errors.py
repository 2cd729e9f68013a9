"""Broken configurations, one per folder under tests/bad_configs/, each with
the exact lines `geodns check` must print (expected.txt, paths relative to
the folder). Every problem is reported, each at its file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodns.config import load
from geodns.errors import ConfigError
from tests.conftest import REPO
from tests.daemonproc import run_geodns

BAD = Path(__file__).parent / "bad_configs"
CASES = sorted(p.name for p in BAD.iterdir() if p.is_dir())


def expected_lines(case: str) -> list[str]:
    return (BAD / case / "expected.txt").read_text().splitlines()


@pytest.mark.parametrize("case", CASES)
def test_bad_config_reports_every_problem_with_location(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD / case)
    with pytest.raises(ConfigError) as info:
        load(Path("geodns.yaml"))
    assert [str(issue) for issue in info.value.issues] == expected_lines(case)


@pytest.mark.parametrize("case", ["many_problems", "yaml_syntax", "bad_record_values"])
def test_check_command_prints_problems_and_exits_2(case: str) -> None:
    result = run_geodns("check", "-c", "geodns.yaml", cwd=BAD / case)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[:-1] == expected_lines(case)
    assert lines[-1] == f"{len(expected_lines(case))} problem(s) found; nothing was changed."


def test_check_command_accepts_the_shipped_example() -> None:
    result = run_geodns("check", cwd=REPO)  # default path: config/geodns.yaml
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config/geodns.yaml: OK (2 zone(s)")


def test_missing_config_file_is_a_clean_error(tmp_path: Path) -> None:
    result = run_geodns("check", "-c", "nowhere.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("nowhere.yaml:1:1: cannot read file:")


def test_a_pool_without_a_check_is_accepted_but_warned_about(tmp_path: Path) -> None:
    (tmp_path / "zones").mkdir()
    (tmp_path / "zones" / "example.com.yaml").write_text(
        (BAD / "relative_name_slip" / "zones" / "example.com.yaml").read_text().rsplit("\n  mx:", 1)[0] + "\n"
    )
    (tmp_path / "geodns.yaml").write_text(
        "datacenters: {par: {}}\npools:\n  api: {members: [{address: 192.0.2.2, dc: par}]}\n"
    )
    result = run_geodns("check", "-c", "geodns.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "warning: pool api is never health-checked (no `check`): every member counts as up,"
        " so it will never fail over" in result.stderr
    )


def test_a_main_file_that_is_not_utf8_is_located(tmp_path: Path) -> None:
    (tmp_path / "geodns.yaml").write_bytes(b"datacenters:\n  par: {}\n  # \xe9t\xe9 2026\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "geodns.yaml")
    assert [str(i).split(": ", 1)[1] for i in info.value.issues] == [
        "not UTF-8: byte(s) e9 here (save the file as UTF-8; Latin-1 is a common cause)"
    ]
    assert info.value.issues[0].where.line == 3 and info.value.issues[0].where.col == 5
