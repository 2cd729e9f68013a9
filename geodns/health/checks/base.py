"""The one interface every check kind implements."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Target:
    """Where a probe goes: the member's check_address/check_port, or its own."""

    address: str
    port: int | None

    @property
    def url_host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    def __str__(self) -> str:
        return f"{self.url_host}:{self.port}" if self.port is not None else self.address


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str  # why it failed, in words for a person at 3 a.m.; "ok" when it passed
    kind: str  # a low-cardinality class for metrics: ok, timeout, refused, status, body, tls, ...
    ours: bool = False  # the probe failed because of this host (fds, buffers, ports, a stalled loop)


OK = ProbeResult(True, "ok", "ok")

# Errors that say something about this host, not about the backend: a probe that
# hits one has learnt nothing about the target, and must not move its state.
OUR_ERRNOS = {
    errno.EMFILE: "too many open files in geodns (EMFILE)",
    errno.ENFILE: "too many open files on this host (ENFILE)",
    errno.ENOBUFS: "no buffer space on this host (ENOBUFS)",
    errno.ENOMEM: "out of memory on this host (ENOMEM)",
    errno.EADDRNOTAVAIL: "no free local address or port for the probe (EADDRNOTAVAIL)",
    errno.EAGAIN: "this host refused a new process or socket for now (EAGAIN)",
}


def failed(kind: str, reason: str) -> ProbeResult:
    return ProbeResult(False, reason, kind)


def checker_error(cause: str, reason: str) -> ProbeResult:
    """A probe that could not be made properly: the checker's fault, not the target's.
    `cause` is a short class for metrics (emfile, loop-stall, ...)."""
    return ProbeResult(False, reason, cause, ours=True)


def os_failure(exc: OSError, kind: str, doing: str) -> ProbeResult:
    """An OSError while probing: ours when its errno says so, else the target's."""
    if exc.errno in OUR_ERRNOS:
        return checker_error(errno.errorcode[exc.errno].lower(), f"{doing}: {OUR_ERRNOS[exc.errno]}")
    return failed(kind, f"{doing}: {(exc.strerror or str(exc)).lower()}")


class Probe(Protocol):
    """One check definition, able to probe any target. `probe` may raise: the
    scheduler turns any exception into a failed result with its reason."""

    async def probe(self, target: Target) -> ProbeResult: ...

    async def close(self) -> None: ...


def excerpt(data: bytes | str, limit: int = 200) -> str:
    """The tail of some output, on one line, for a failure reason."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-limit:]
