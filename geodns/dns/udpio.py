"""Batched UDP reads and writes for the answer loop: recvmmsg/sendmmsg through the
C extension (`native`), which also replays what the answer cache holds without a
Python object per reply: 3-4 us less CPU per cache hit (bench/dns_qps.py).
Without it the same batches are made of socket calls and the answer loop
replays in Python.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from geodns.dns import native
from geodns.dns.fastcache import AnswerCache
from geodns.dns.handler import Stats
from geodns.dns.native import UNAVAILABLE, netio

log = logging.getLogger(__name__)

Address = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)
Batch = list[tuple[bytes, Address]]
MAX_DATAGRAM = 65535
UDP_SLOTS = 64  # datagrams per batch (the C extension's SLOTS): enough to amortise a wake-up, fair

Admit = Callable[[str, float], bool]
Served = tuple[Batch, Batch, int, int]  # rest, refused, dropped, errno
Serve = Callable[[AnswerCache, Stats, Admit | None, float], Served]


class UdpIO(Protocol):
    kind: str  # for the start-up log
    replays: bool  # serve() sends what the cache holds (exact bytes and lowered names) itself

    @property
    def recv(self) -> Callable[[int], Batch]:
        """recv(limit): up to `limit` queued datagrams; [] when none wait."""

    @property
    def send(self) -> Callable[[Batch], tuple[int, int]]:
        """send(replies): send every reply; (how many could not go, the errno of the last such)."""

    @property
    def serve(self) -> Serve:
        """serve(cache, stats, admit, now): receive a batch and send the replies `cache`
        can replay for it (counted in `stats`; with a rate limiter, each first passed by
        `admit(host, now)`); returns the datagrams left for the answer path (`rest`),
        those `admit` refused (for the limiter to charge), and how many replies could
        not go with the errno of the last. The socket I/O replays nothing: all is `rest`."""


class BatchedIO:
    """recvmmsg/sendmmsg through the C extension, bound with partial so that no Python
    frame stands between the answer loop and C."""

    kind = "recvmmsg/sendmmsg"
    replays = True

    def __init__(self, sock: socket.socket) -> None:
        self.recv: Callable[[int], Batch] = functools.partial(netio.recv, sock.fileno())
        self.send: Callable[[Batch], tuple[int, int]] = functools.partial(
            netio.send, sock.fileno(), int(sock.family)
        )
        self.serve: Serve = functools.partial(netio.serve, sock.fileno())


class SocketIO:
    """The same batches, one socket call per datagram."""

    kind = "socket calls"
    replays = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, limit: int) -> Batch:
        batch: Batch = []
        recvfrom = self.sock.recvfrom
        for _ in range(limit):
            try:
                batch.append(recvfrom(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error surfaced on the socket
                log.debug("UDP receive error: %s", exc)
        return batch

    def serve(self, cache: AnswerCache, stats: Stats, admit: Admit | None, now: float) -> Served:
        return self.recv(UDP_SLOTS), [], 0, 0

    def send(self, replies: Batch) -> tuple[int, int]:
        dropped = error = 0
        sendto = self.sock.sendto
        for reply, address in replies:
            try:
                sendto(reply, address)
            except OSError as exc:  # a full send buffer or an unreachable client
                dropped += 1
                error = exc.errno or 0
        return dropped, error


def udp_io(sock: socket.socket, batched: bool | None = None) -> UdpIO:
    """The fastest I/O this build has for `sock` (`batched` forces a choice: tests)."""
    if batched is None:
        batched = native.enabled
    if batched and netio is None:
        raise RuntimeError(f"batched UDP I/O asked for, but {UNAVAILABLE}")
    return BatchedIO(sock) if batched else SocketIO(sock)
