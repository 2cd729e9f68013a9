"""Ports a test must choose before something binds them (peers that must know
each other's addresses, a server started in another process)."""

from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768-60999): a port picked there by binding port 0
# was, between the pick and the real bind, taken as the source port of an outgoing
# connection (a daemon's peer exchange or probe) and the test failed "address in use".
_LOW, _HIGH = 20000, 32767


def unused_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on `host`, outside the ephemeral range."""
    for _ in range(200):
        port = random.randrange(_LOW, _HIGH)
        try:
            with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind((host, port))
                udp.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no free port between {_LOW} and {_HIGH} on {host}")
