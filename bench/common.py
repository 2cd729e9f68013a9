"""Shared by the benchmarks: a minimal zone, and an HTTP backend to probe."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ZONE_HEAD = """\
origin: example.test.
soa: {mname: ns1.example.test., rname: hostmaster.example.test.}
records:
  "@": {type: NS, value: ns1}
  ns1: {type: A, value: 192.0.2.53}
"""


def free_port() -> int:
    """A loopback port free for UDP right now (its user binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port: int = udp.getsockname()[1]
    return port


def serve_cmd(config: Path, port: int) -> list[str]:
    """`geodns serve` on 127.0.0.1:port, quiet but for errors."""
    return [
        sys.executable,
        "-m",
        "geodns",
        "--log-level",
        "error",
        "serve",
        "-c",
        str(config),
        "--dns-listen",
        f"127.0.0.1:{port}",
    ]


def write_zone(folder: Path, records: str = "") -> None:
    (folder / "zones").mkdir(exist_ok=True)
    (folder / "zones" / "z.yaml").write_text(ZONE_HEAD + records)


# A tiny uvloop HTTP responder on ports BASE..BASE+N-1 of 127.0.0.1, pinned to core 1:
# `python -c BACKEND BASE N SECONDS`; prints 'ready' once listening.
BACKEND = r"""
import asyncio, os, sys, uvloop
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t
    def data_received(self, d):
        if b"\r\n\r\n" in d:
            self.t.write(RESPONSE); self.t.close()
async def main(base, n, seconds):
    loop = asyncio.get_running_loop()
    for i in range(n):
        await loop.create_server(P, "127.0.0.1", base + i, backlog=64)
    print("ready", flush=True)
    await asyncio.sleep(seconds)
os.sched_setaffinity(0, {1})
uvloop.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
"""
