"""Start-up and bind errors name their cause, and the shipped example starts on a
host without IPv6. The IPv6-less host and the unprivileged user are real: a fresh
network namespace (`unshare -n`) with IPv6 disabled on its loopback, and `setpriv`
to the nobody user; nothing outside the namespace is touched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, needs

# Runs inside the namespace: start geodns on the shipped example, ask it once over
# UDP on 127.0.0.1, stop it; print what happened as JSON.
INSIDE = r"""
import json, subprocess, sys, time
import dns.message, dns.query
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1"], check=True)
proc = subprocess.Popen([sys.executable, "-m", "geodns", "serve", "-c", sys.argv[1]],
                        stderr=subprocess.PIPE, text=True)
log, answer = [], None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    line = proc.stderr.readline()
    if not line:
        break
    log.append(line)
    if " zone(s): " in line:
        try:
            reply = dns.query.udp(dns.message.make_query("www.example.com.", "A"), "127.0.0.1", port=5300,
                                  timeout=2)
            answer = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
        except Exception as exc:
            answer = repr(exc)
        break
proc.terminate()
try:
    proc.wait(10)
except subprocess.TimeoutExpired:
    proc.kill()
print(json.dumps({"log": log, "answer": answer, "code": proc.returncode}))
"""


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example, with a state_dir of its own."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    text = (tmp_path / "config" / "geodns.yaml").read_text()
    assert "state_dir: ../var" in text
    (tmp_path / "config" / "geodns.yaml").write_text(text.replace("state_dir: ../var", "state_dir: state"))
    return tmp_path / "config" / "geodns.yaml"


def _in_fresh_netns(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["unshare", "-n", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@needs("unshare", "ip", "sysctl", root=True)
def test_the_example_starts_without_ipv6_and_says_what_it_skipped(example: Path) -> None:
    run = _in_fresh_netns(sys.executable, "-c", INSIDE, str(example))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    log = "".join(result["log"])
    assert isinstance(result["answer"], list) and result["answer"], (result["answer"], log)
    assert (
        "not listening: cannot listen on [::1]:5300 (UDP and TCP): this host has no IPv6 on loopback" in log
    )
    assert "DNS listening on 127.0.0.1:5300" in log


@needs("unshare", "ip", "sysctl", root=True)
def test_only_ipv6_on_a_host_without_it_is_an_error_naming_the_cause(example: Path) -> None:
    script = (
        "import subprocess, sys\n"
        "subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n"
        "subprocess.run(['sysctl', '-qw', 'net.ipv6.conf.lo.disable_ipv6=1'], check=True)\n"
        "sys.exit(subprocess.run([sys.executable, '-m', 'geodns', 'serve', '-c', sys.argv[1],"
        " '--dns-listen', '[::1]:5300']).returncode)\n"
    )
    run = _in_fresh_netns(sys.executable, "-c", script, str(example))
    assert run.returncode == 1, run.stderr
    assert "cannot listen on [::1]:5300 (UDP): this host has no IPv6 on loopback" in run.stderr
    assert "Traceback" not in run.stderr and "Errno" not in run.stderr


@pytest.fixture
def world_readable_example() -> Iterator[Path]:
    """The example where the nobody user can read it and write its state."""
    where = Path(tempfile.mkdtemp(prefix="geodns-nobody-"))
    try:
        where.chmod(0o755)
        shutil.copytree(REPO / "config", where / "config")
        main = where / "config" / "geodns.yaml"
        main.write_text(main.read_text().replace("state_dir: ../var", f"state_dir: {where / 'state'}"))
        (where / "state").mkdir(mode=0o700)
        os.chown(where / "state", 65534, 65534)
        yield main
    finally:
        shutil.rmtree(where, ignore_errors=True)


@needs("unshare", "setpriv", root=True)
def test_port_53_without_the_capability_says_so(world_readable_example: Path) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    can_run = _in_fresh_netns(*nobody, sys.executable, "-c", "import geodns")
    if can_run.returncode != 0:
        pytest.skip(f"the nobody user cannot run this checkout: {can_run.stderr.strip()[-200:]}")
    run = _in_fresh_netns(
        *nobody,
        sys.executable,
        "-m",
        "geodns",
        "serve",
        "-c",
        str(world_readable_example),
        "--dns-listen",
        "127.0.0.1:53",
    )
    assert run.returncode == 1, run.stderr
    assert "cannot listen on 127.0.0.1:53 (UDP): port 53 needs root or CAP_NET_BIND_SERVICE" in run.stderr
    assert "Traceback" not in run.stderr


def test_http_listener_in_use_is_named(example: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "geodns",
                "serve",
                "-c",
                str(example),
                "--dns-listen",
                "127.0.0.1:0",
                "--http-listen",
                f"127.0.0.1:{port}",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert run.returncode == 1, run.stderr
    assert f"cannot listen on 127.0.0.1:{port} (HTTP): address in use by another process" in run.stderr
