"""Log output an operator (and a log pipeline) can rely on: UTC with the zone,
JSON with the state change's fields, the options accepted after the command,
and a first line naming the version, pid and config."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from geodns import __version__
from tests.configs import write_zone
from tests.conftest import REPO

UTC_TEXT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def _config(tmp_path: Path) -> Path:
    write_zone(tmp_path, "")
    (tmp_path / "geodns.yaml").write_text(
        "server: {state_dir: state}\n"
        "datacenters: {par: {}}\n"
        "checks: {web: {type: tcp, port: 9, interval: 1s, timeout: 300ms}}\n"
        "pools:\n  web: {check: web, members: [{address: 127.0.0.61, dc: par}]}\n"
    )
    return tmp_path / "geodns.yaml"


def _serve_until(config: Path, needle: str, *options: str) -> list[str]:
    """Run `geodns serve OPTIONS`, collect stderr lines until one holds `needle`, stop."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "geodns",
            "serve",
            "-c",
            str(config),
            "--dns-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            *options,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if needle in line or len(lines) > 500:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    return lines


def test_text_logs_are_utc_and_start_by_naming_version_pid_and_config(tmp_path: Path) -> None:
    config = _config(tmp_path)
    lines = _serve_until(config, "unknown -> down")
    assert all(UTC_TEXT.match(line) for line in lines), lines
    assert f"geodns {__version__} starting: pid " in lines[0] and str(config.resolve()) in lines[0]


def test_json_logs_after_the_command_carry_the_state_change_fields(tmp_path: Path) -> None:
    config = _config(tmp_path)
    lines = _serve_until(config, "unknown -> down", "--log-format", "json", "--log-level", "debug")
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(d["time"].endswith("Z") and {"level", "logger", "message"} <= d.keys() for d in docs)
    assert any(d["level"] == "DEBUG" for d in docs)  # --log-level after the command took effect
    change = next(d for d in docs if d.get("event") == "state_change")
    assert change["member"] == "127.0.0.61" and change["pool"] == "web" and change["dc"] == "par"
    assert (change["old"], change["new"], change["forced"]) == ("unknown", "down", False)
    assert "127.0.0.61:9" in change["reason"] and change["logger"] == "geodns.health.monitor"
