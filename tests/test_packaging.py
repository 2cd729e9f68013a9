"""The wheel a user installs: it carries the example, the status page, py.typed and
the license, its version is the package's one, and `geodns demo` runs from it
outside any checkout (in a network namespace of its own, so the example's fixed
ports never meet a demo running on this host)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from geodns import __version__
from tests.conftest import REPO, needs

# Runs inside the namespace, from a folder without config/: the demo must find the
# example inside the installed package, copy it, and answer from it.
INSIDE = r"""
import json, subprocess, sys, time
import dns.message, dns.query
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
proc = subprocess.Popen([sys.executable, "-S", "-m", "geodns", "demo"], stderr=subprocess.PIPE, text=True)
log, answer = [], None
deadline = time.monotonic() + 60
try:
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log.append(line)
        if " zone(s): " in line:  # listening
            reply = dns.query.udp(dns.message.make_query("www.example.com.", "A"), "127.0.0.1", port=5300,
                                  timeout=2)
            answer = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
            break
finally:
    proc.terminate()
    proc.wait(10)
print(json.dumps({"log": log, "answer": answer}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("geodns-*.whl")
    return found


def test_the_wheel_carries_the_example_the_page_and_the_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "geodns/example/geodns.yaml",
        "geodns/example/zones/example.com.yaml",
        "geodns/example/cluster/par.yaml",
        "geodns/api/statuspage/status.js",
        "geodns/py.typed",
        f"geodns-{__version__}.dist-info/licenses/LICENSE",
    ):
        assert needed in names, needed
    # The batched UDP I/O, compiled (this machine has gcc; without one it is optional).
    assert any(n.startswith("geodns/dns/_netio.") and n.endswith(".so") for n in names), sorted(names)
    metadata = zipfile.ZipFile(wheel).read(f"geodns-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata and "License: Apache-2.0" in metadata
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")


@needs("unshare", "ip", root=True)
def test_demo_runs_from_the_installed_wheel_outside_a_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    # The installed wheel first, then this environment's dependencies; -S keeps this
    # checkout's editable install (a .pth hook) out of the way.
    path = os.pathsep.join([str(target), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    elsewhere = tmp_path / "anywhere"
    elsewhere.mkdir()
    version = subprocess.run(
        [sys.executable, "-S", "-m", "geodns", "--version"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.strip() == f"geodns {__version__}"
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import geodns; print(geodns.__file__)"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(target))  # the wheel's copy, not the checkout
    run = subprocess.run(
        ["unshare", "-n", sys.executable, "-S", "-c", INSIDE],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    log = "".join(result["log"])
    assert "running the example shipped with geodns, copied to" in log, log
    assert result["answer"] == ["127.0.0.11", "127.0.0.12"], log
