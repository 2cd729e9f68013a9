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
