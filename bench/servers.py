"""DNS servers for the benchmarks: geodns and the references (gdnsd, Knot, NSD,
PowerDNS) on loopback ports with the same zone, pinned to chosen cores, with
what they cost: start-up time, resident memory and CPU time (every process and
thread of the server, DNS workers included)."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import free_port, serve_cmd
from geodns.config import Config, load
from geodns.dns.zonetext import zone_text
from geodns.steering.policy import AllMembers
from geodns.zone.names import to_text

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def ask(port: int, name: str = "www.example.test", timeout: float = 0.5) -> bool:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    q = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(q, ("127.0.0.1", port))
            return len(s.recv(512)) > 12
        except OSError:
            return False


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    startup: float
    cmd: list[str]
    cwd: Path
    cpus: str

    def forget(self) -> None:
        """Start anew if the server keeps answers (geodns): a stream of new queries
        must not meet the answers its previous run left in the cache."""
        if self.name != "geodns":
            return  # gdnsd, Knot and NSD keep no answer cache
        self.stop()
        again = start(self.name, self.cmd, self.port, self.cwd, self.cpus)
        self.proc = again.proc

    def tree(self) -> list[int]:
        """The server's process and every descendant (DNS workers, forked helpers)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += _children(pid)
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU time of every process of the server, all threads included."""
        total = 0
        for pid in self.tree():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def memory_mb(self) -> float:
        """Proportional set size of all its processes: memory DNS workers share
        (copy-on-write, libraries) is counted once, not once per process."""
        total = 0
        for pid in self.tree():
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            found = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
            total += int(found[1]) if found else 0
        return total / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _children(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return pids


def start(name: str, cmd: list[str], port: int, cwd: Path, cpus: str = "0") -> Server:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", cpus, *cmd],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = t0 + 300
    while not ask(port, timeout=0.05):
        if proc.poll() is not None or time.perf_counter() > deadline:
            proc.kill()
            raise RuntimeError(f"{name} did not start (exit {proc.poll()})")
        time.sleep(0.02)
    return Server(name, port, proc, time.perf_counter() - t0, cmd, cwd, cpus)


def start_geodns(root: Path, cpus: str = "0") -> Server:
    port = free_port()
    return start("geodns", serve_cmd(root / "geodns.yaml", port), port, root, cpus)


def start_reference(kind: str, root: Path, config_path: Path) -> Server:
    config = load(config_path)
    ref = root / kind
    (ref / "zones").mkdir(parents=True)
    port = free_port()
    for origin, zone in config.zones.zones.items():
        (ref / "zones" / to_text(origin).rstrip(".")).write_text(zone_text(zone, AllMembers(config.pools)))
    if kind == "nsd":
        zones_conf = "".join(
            f"zone:\n  name: {to_text(o)}\n  zonefile: {ref / 'zones' / to_text(o).rstrip('.')}\n"
            for o in config.zones.zones
        )
        (ref / "nsd.conf").write_text(
            f"server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  server-count: 1\n"
            f'  username: ""\n  chroot: ""\n  database: ""\n  pidfile: {ref}/nsd.pid\n'
            f"  xfrdfile: {ref}/xfrd.state\n  zonelistfile: {ref}/zone.list\n  verbosity: 0\n"
            "  rrl-ratelimit: 0\n"  # NSD limits responses per /24 by default: not what is measured here
            f"remote-control:\n  control-enable: no\n{zones_conf}"
        )
        return start("nsd", ["nsd", "-d", "-c", str(ref / "nsd.conf")], port, ref)
    if kind == "gdnsd":
        for sub in ("run", "state"):
            (ref / sub).mkdir()
        # Own run and state dirs: gdnsd's control socket would clash with any other instance.
        (ref / "config").write_text(
            f"options => {{ listen => [ 127.0.0.1:{port} ], run_dir => {ref}/run, "
            f"state_dir => {ref}/state }}\n"
        )
        return start("gdnsd", ["gdnsd", "-c", str(ref), "start"], port, ref)
    zones = "".join(
        f"  - domain: {to_text(o)}\n    file: {ref / 'zones' / to_text(o).rstrip('.')}\n"
        for o in config.zones.zones
    )
    if kind in ("pdns", "pdns-lua"):
        named = ""
        for origin, zone in config.zones.zones.items():
            path = ref / "zones" / to_text(origin).rstrip(".")
            if kind == "pdns-lua":
                path.write_text(_lua_zone(zone_text(zone, AllMembers(config.pools)), config))
            named += f'zone "{to_text(origin).rstrip(".")}" {{ type master; file "{path}"; }};\n'
        (ref / "named.conf").write_text(named)
        (ref / "pdns.conf").write_text(
            f"launch=bind\nbind-config={ref}/named.conf\nlocal-address=127.0.0.1\nlocal-port={port}\n"
            f"socket-dir={ref}\ndaemon=no\nguardian=no\nsetuid=\nsetgid=\nenable-lua-records=yes\n"
        )
        return start(kind, ["pdns_server", f"--config-dir={ref}"], port, ref)
    (ref / "knot.conf").write_text(
        f"server:\n    listen: 127.0.0.1@{port}\n    rundir: {ref}\n"
        f"database:\n    storage: {ref}/db\nzone:\n{zones}"
    )
    return start("knot", ["knotd", "-c", str(ref / "knot.conf")], port, ref)


def _lua_zone(text: str, config: Config) -> str:
    """PowerDNS's own way to answer from health-checked members: LUA records.
    Pool-backed names become `ifportup(8080, {...})` over the pool's members,
    as PowerDNS documents them; everything else stays as exported."""
    pooled = {f"{name}.example.test.": pool for name, pool in (("fo", "fo"), ("wt", "wt"), ("geo", "geo"))}
    out, done = [], set()
    for line in text.splitlines():
        owner = line.split(" ", 1)[0]
        if owner in pooled and " IN A " in line:
            if owner not in done:
                members = ", ".join(f"'{m.address}'" for m in config.pools[pooled[owner]].members)
                out.append(f'{owner} 30 IN LUA A "ifportup(8080, {{{members}}})"')
                done.add(owner)
            continue
        out.append(line)
    return "\n".join(out) + "\n"
