"""Accepting DNS-over-TCP connections, a few per turn of the loop (each then a
tcp.TcpConnection)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from geodns.dns.tcp import TcpConnection

log = logging.getLogger(__name__)

TCP_ACCEPT_BATCH = 32  # connections accepted per turn of the loop
TCP_BACKLOG = 512


class TcpAcceptor:
    """Accepts TCP connections a few per turn of the loop. The loop's own server
    accepts everything pending in one callback: 500 connections opened at once by
    an attacker held the loop for 30-100 ms, and every UDP answer with it."""

    def __init__(self, sock: socket.socket, factory: Callable[[socket.socket, str], TcpConnection]) -> None:
        self.sock = sock
        self.factory = factory

    def start(self) -> None:
        self.sock.listen(TCP_BACKLOG)
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(TCP_ACCEPT_BATCH):  # the rest on the next turn, after everyone else
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, or the peer already gone
                log.debug("TCP accept failed: %s", exc)
                return
            try:
                conn.setblocking(False)
                # Replies go out as they are written: pipelined answers must not wait on Nagle.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                log.debug("TCP connection lost while being set up: %s", exc)
                conn.close()
                continue
            self.factory(conn, addr[0]).start()

    def stop(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()
