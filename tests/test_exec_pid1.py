"""geodns as PID 1 (a container without an init), running an exec check that
leaves children behind every time: nothing accumulates, neither zombies nor
orphans. A real PID namespace made with unshare (root; CI runs as root)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.configs import write_zone
from tests.conftest import REPO, needs

# Every run leaves a setsid()'d sleep, a double-forked sleep and a plain background one.
GEODNS = [sys.executable, "-m", "geodns"]
LEAVES_CHILDREN = "setsid sleep 60 & (sleep 60 &); sleep 60 & exit 0"


def _tree(root: int) -> list[tuple[int, str, str]]:
    """(pid, command name, state) of every process below `root`."""
    parents: dict[int, int] = {}
    info: dict[int, tuple[str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        parents[int(entry.name)] = int(ppid)
        info[int(entry.name)] = (name, state)
    below = []
    for pid in parents:
        walk = pid
        while walk > 1 and walk != root:
            walk = parents.get(walk, 0)
        if walk == root and pid != root:
            below.append((pid, *info[pid]))
    return below


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@needs("unshare", root=True)
def test_as_pid_1_exec_checks_leave_no_zombies_and_no_orphans(tmp_path: Path) -> None:
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    (tmp_path / "geodns.yaml").write_text(f"""\
server: {{dns_listen: ["127.0.0.1:0"], http_listen: null, state_dir: state, workers: 2}}
datacenters: {{par: {{}}}}
checks:
  leaves: {{type: exec, command: ["/bin/sh", "-c", "{LEAVES_CHILDREN}"], interval: 300ms, timeout: 250ms}}
pools:
  web: {{check: leaves, members: [{{address: 192.0.2.1, dc: par}}]}}
""")
    proc = subprocess.Popen(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            "-m",
            "geodns",
            "serve",
            "-c",
            "geodns.yaml",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        samples = []
        deadline = time.monotonic() + 4.0  # ~13 probes: ~40 children left behind without reaping
        while time.monotonic() < deadline:
            time.sleep(0.4)
            tree = _tree(proc.pid)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            samples.append(
                (
                    sum(1 for _, _, state in tree if state == "Z"),
                    sum(1 for _, name, state in tree if name == "sleep" and state != "Z"),
                    len(tree),
                )
            )
        geodns = [p for p, name, _ in _tree(proc.pid) if name.startswith("python")]
        # The main process (PID 1 in there) and its two DNS workers, whose exits it must
        # reap as well (their statuses kept for the supervisor, not dropped by a sweep).
        assert len(geodns) == 3, "geodns and its two workers are not running in the namespace"
        main = [p for p in geodns if _ppid(p) == proc.pid]
        assert len(main) == 1
        zombies = max(z for z, _, _ in samples)
        orphans = max(s for _, s, _ in samples)
        # At most the leftovers of one probe at the moment of a sample: LEAVES_CHILDREN leaves
        # three sleeps, killed then reaped a sweep later (without reaping: ~40 by now).
        assert zombies <= 3 and orphans <= 3, samples
        assert min(s for _, s, _ in samples) <= 1, samples
        os.kill(main[0], signal.SIGTERM)  # PID 1 in there: only a handled signal reaches it
        assert proc.wait(10) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
        assert "left behind by an exec check" in stderr
        assert "starting a new one" not in stderr, stderr  # no worker died or was thought dead
    finally:
        if proc.poll() is None:
            proc.kill()  # unshare's --kill-child takes the namespace with it
            proc.wait()
