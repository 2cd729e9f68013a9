"""Datacenters in network namespaces, for the cluster's partition tests.

One namespace per datacenter (its geodns instance on 198.18.N.2, its backend on
198.18.N.3: the benchmarking range, RFC 2544), joined by a router namespace.
The test looks in from the router's namespace: `Lab.call` runs a function on a
thread moved into it (setns), so the host's own network is never touched and
nothing but these namespaces ever sees a packet. Links are cut with
`ip link set ... down`, paths with blackhole routes. Needs root and iproute2.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import dns.exception
import dns.message
import dns.query

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000

REPO = Path(__file__).resolve().parent.parent

BACKEND = r"""
import asyncio, sys
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
async def serve(reader, writer):
    try:
        await reader.readuntil(b"\r\n\r\n"); writer.write(OK); await writer.drain()
    except Exception: pass
    finally: writer.close()
async def main():
    await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]))
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def www_answer(address: str, timeout: float = 0.5) -> set[str] | None:
    """The addresses an instance answers for www.example.test (None: no answer)."""
    try:
        reply = dns.query.udp(
            dns.message.make_query("www.example.test.", "A"), address, port=5300, timeout=timeout
        )
    except (dns.exception.Timeout, OSError):
        return None
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def available() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (ip)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _forward(ns: str) -> None:
    """Route between links in `ns` (per namespace; no sysctl binary needed)."""
    forward = "echo 1 > /proc/sys/net/ipv4/ip_forward"
    subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", forward], check=True, timeout=30)


class Lab:
    """Per datacenter N: a namespace for its backend (198.18.N.3, linked to the router)
    and one for its geodns instance (198.19.N.2, linked to the backend's namespace),
    so an instance can lose its network while its datacenter's backend stays reachable."""

    def __init__(self, dcs: tuple[str, ...]) -> None:
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.dcs = dcs
        self.router = f"gr-{tag}"
        self.ns = {dc: f"g{dc}-{tag}" for dc in dcs}  # the datacenter: its backend
        self.ins = {dc: f"i{dc}-{tag}" for dc in dcs}  # its geodns instance
        self.links: dict[str, str] = {}  # dc -> the router's end of its link
        self.uplinks: dict[str, str] = {}  # dc -> the instance's end of its link
        self.procs: list[subprocess.Popen[bytes]] = []
        self.named: dict[str, subprocess.Popen[bytes]] = {}
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def instance_ip(self, dc: str) -> str:
        return f"198.19.{self.dcs.index(dc) + 1}.2"

    def backend_ip(self, dc: str) -> str:
        return f"198.18.{self.dcs.index(dc) + 1}.3"

    def _build(self) -> None:
        _ip("netns", "add", self.router)
        _ip("-n", self.router, "link", "set", "lo", "up")
        _forward(self.router)
        for i, dc in enumerate(self.dcs, start=1):
            ns, ins, here, there = self.ns[dc], self.ins[dc], f"r{i}-{self.tag}", f"d{i}-{self.tag}"
            for name in (ns, ins):
                _ip("netns", "add", name)
                _ip("-n", name, "link", "set", "lo", "up")
            _forward(ns)
            _ip("link", "add", here, "netns", self.router, "type", "veth", "peer", "name", there, "netns", ns)
            _ip("-n", self.router, "addr", "add", f"198.18.{i}.1/24", "dev", here)
            _ip("-n", self.router, "link", "set", here, "up")
            _ip("-n", ns, "addr", "add", f"198.18.{i}.3/24", "dev", there)
            _ip("-n", ns, "link", "set", there, "up")
            _ip("-n", ns, "route", "add", "default", "via", f"198.18.{i}.1")
            self.links[dc] = here
            dc_end, instance_end = f"e{i}-{self.tag}", f"u{i}-{self.tag}"
            _ip(
                "link", "add", dc_end, "netns", ns, "type", "veth", "peer", "name", instance_end, "netns", ins
            )
            _ip("-n", ns, "addr", "add", f"198.19.{i}.1/24", "dev", dc_end)
            _ip("-n", ns, "link", "set", dc_end, "up")
            _ip("-n", ins, "addr", "add", f"198.19.{i}.2/24", "dev", instance_end)
            _ip("-n", ins, "link", "set", instance_end, "up")
            _ip("-n", ins, "route", "add", "default", "via", f"198.19.{i}.1")
            _ip("-n", self.router, "route", "add", f"198.19.{i}.0/24", "via", f"198.18.{i}.3")
            self.uplinks[dc] = instance_end

    def spawn(self, key: str, namespace: str, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with log.open("ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", namespace, *cmd], stdout=out, stderr=out, env=env)
        self.procs.append(proc)
        self.named[key] = proc
        return proc

    def backend(self, dc: str, port: int, log: Path) -> None:
        self.spawn(
            f"backend-{dc}", self.ns[dc], [sys.executable, "-c", BACKEND, self.backend_ip(dc), str(port)], log
        )

    def start_cluster(
        self,
        root: Path,
        token: str,
        *,
        interval: float = 0.5,
        rise: int = 2,
        fall: int = 2,
        cluster_interval: float = 0.5,
        cluster: bool = True,
    ) -> None:
        """A backend and a geodns instance in every datacenter: one `all` pool of the
        three backends, www.example.test answered from it, the instances peers of each
        other (or, `cluster=False`, each alone)."""
        for dc in self.dcs:
            self.backend(dc, 8080, root / f"backend-{dc}.log")
        for dc in self.dcs:
            config = self._config(root, dc, token, interval, rise, fall, cluster_interval, cluster)
            cmd = [sys.executable, "-m", "geodns", "--log-level", "info", "serve", "-c", str(config)]
            self.spawn(f"geodns-{dc}", self.ins[dc], cmd, root / f"geodns-{dc}.log")

    def _config(
        self,
        root: Path,
        dc: str,
        token: str,
        interval: float,
        rise: int,
        fall: int,
        cluster_interval: float,
        cluster: bool,
    ) -> Path:
        folder = root / dc
        folder.mkdir()
        (folder / "zones").mkdir()
        (folder / "zones" / "example.test.yaml").write_text(
            "origin: example.test.\nsoa: {mname: ns1.example.test., rname: hostmaster.example.test.}\n"
            "records:\n  '@': {type: NS, value: ns1}\n  ns1: {type: A, value: 192.0.2.53}\n"
            "  www: {type: A, pool: web}\n"
        )
        (folder / "token").write_text(token)
        (folder / "token").chmod(0o600)
        ip = self.instance_ip(dc)
        peers = "".join(
            f"    - {{name: {o}, url: 'http://{self.instance_ip(o)}:8053', datacenter: {o}}}\n"
            for o in self.dcs
            if o != dc
        )
        members = "".join(
            f"      - {{address: {self.backend_ip(o)}, dc: {o}, check_port: 8080}}\n" for o in self.dcs
        )
        text = (
            f"server: {{dns_listen: ['{ip}:5300'], http_listen: '{ip}:8053', state_dir: state, workers: 1,"
            f" name: {dc}, datacenter: {dc}, api_token_file: token,"
            " rate_limit: {exempt: [198.18.0.0/15]}}\n"  # the lab's own clients, asking fast
            f"datacenters: {{{', '.join(f'{d}: {{}}' for d in self.dcs)}}}\n"
            f"checks: {{web: {{type: http, expect_body: OK, interval: {interval}s, timeout: 400ms,"
            f" rise: {rise}, fall: {fall}}}}}\n"
            f"pools:\n  web:\n    check: web\n    policy: all\n    members:\n{members}"
        )
        if cluster:
            text += (
                f"cluster:\n  token_file: token\n  interval: {cluster_interval}s\n  timeout: 1500ms\n"
                f"  peers:\n{peers}"
            )
        (folder / "geodns.yaml").write_text(text)
        return folder / "geodns.yaml"

    def kill(self, key: str) -> None:
        proc = self.named.pop(key)
        proc.kill()
        proc.wait(timeout=10)

    def cut(self, dc: str, up: bool = False) -> None:
        """Take the datacenter's only link down (or up again)."""
        _ip("-n", self.router, "link", "set", self.links[dc], "up" if up else "down")
        if up:  # a link going down takes its routes with it
            i = self.dcs.index(dc) + 1
            _ip("-n", self.ns[dc], "route", "replace", "default", "via", f"198.18.{i}.1")
            _ip("-n", self.router, "route", "replace", f"198.19.{i}.0/24", "via", f"198.18.{i}.3")

    def blackhole(self, dc: str, address: str) -> None:
        """From `dc`'s instance, packets to `address` go nowhere (a broken path)."""
        _ip("-n", self.ins[dc], "route", "add", "blackhole", f"{address}/32")

    def lose_routes(self, dc: str) -> None:
        """The instance's host loses its network (its link goes down); the datacenter's
        backend beside it stays reachable to everyone else."""
        _ip("-n", self.ins[dc], "link", "set", self.uplinks[dc], "down")

    def call(self, fn: Callable[..., T], *args: object, inside_dc: str | None = None) -> T:
        """`fn(*args)` on a thread inside the router's namespace (or a datacenter's):
        its sockets live there."""
        name = self.router if inside_dc is None else self.ins[inside_dc]

        def inside() -> T:
            fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            return fn(*args)

        with ThreadPoolExecutor(1) as pool:  # a fresh thread each time: it never leaves the namespace
            return pool.submit(inside).result()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in [*self.ins.values(), *self.ns.values(), self.router]:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
