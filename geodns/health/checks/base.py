"""The one interface every check kind implements."""

from __future__ import annotations

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


OK = ProbeResult(True, "ok", "ok")


def failed(kind: str, reason: str) -> ProbeResult:
    return ProbeResult(False, reason, kind)


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
