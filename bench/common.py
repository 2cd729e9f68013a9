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


# A paced UDP DNS client pinned to core 1 asking for www.example.test A:
# `python -c DNS_CLIENT PORT RATE SECONDS` prints "answered sent p50 p99" (seconds).
DNS_CLIENT = r"""
import os, socket, struct, sys, time, select
os.sched_setaffinity(0, {1})
port, rate, seconds = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
q = bytes.fromhex("0000010000010000000000000377777707657861" "6d706c6504746573740000010001")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
sent = {}; lat = []; i = 0; start = time.perf_counter(); gap = 1.0 / rate
while True:
    now = time.perf_counter()
    if now - start > seconds: break
    if now >= start + i * gap:
        qid = i & 0xFFFF; sent[qid] = now
        s.sendto(struct.pack("!H", qid) + q[2:], ("127.0.0.1", port)); i += 1
    r, _, _ = select.select([s], [], [], max(0.0, start + i * gap - time.perf_counter()))
    while r:
        try: data = s.recv(2048)
        except BlockingIOError: break
        t = sent.pop(struct.unpack("!H", data[:2])[0], None)
        if t is not None: lat.append(time.perf_counter() - t)
lat.sort()
print(len(lat), i, lat[len(lat)//2] if lat else -1, lat[int(len(lat)*0.99)] if lat else -1, flush=True)
"""
