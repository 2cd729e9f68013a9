"""What a configuration asks of the checker, against what one host can do (pure).

bench/probe_capacity.py measured one core of this project's machine running
2,000 HTTP probes per second on time (half the core); beyond that probes start
late, and with a saturated loop a probe measures us rather than the backend.
Late probes are skipped and counted, never failed (see monitor.py), so an
oversized configuration does not take members down: their states just update
slower. Saying so before it runs is kinder.
"""

from __future__ import annotations

from dataclasses import dataclass

from geodns.config.model import Config
from geodns.health.health import probe_keys

# Probes per second one core ran on time here (bench/probe_capacity.py).
MEASURED_RATE = 2000.0


@dataclass(frozen=True)
class ProbeLoad:
    targets: int
    rate: float  # probes per second wanted
    worst_concurrency: float  # probes in flight if every target hangs until its timeout


def probe_load(config: Config) -> ProbeLoad:
    targets = probe_keys(config)
    rate = sum(1.0 / config.checks[key.check].interval for key in targets)
    worst = sum(config.checks[key.check].timeout / config.checks[key.check].interval for key in targets)
    return ProbeLoad(len(targets), rate, worst)


def capacity_warnings(config: Config) -> list[str]:
    load = probe_load(config)
    out = []
    budget = config.server.max_probe_rate
    if load.rate > budget:
        out.append(
            f"{load.targets} probe targets want {load.rate:,.0f} probes/s but server.max_probe_rate is"
            f" {budget:,} (one core of the reference machine ran {MEASURED_RATE:,.0f}/s on time, half of it"
            " busy): probes beyond it are skipped and counted late, states update slower and /readyz"
            " says why; lengthen intervals, share targets between pools, or raise the rate on a"
            " bigger host"
        )
    limit = config.server.max_concurrent_probes
    if load.worst_concurrency > limit:
        out.append(
            f"if backends hang, {load.worst_concurrency:,.0f} probes would be in flight at once but"
            f" server.max_concurrent_probes is {limit}: the rest wait, start late and are skipped"
        )
    return out


FD_RESERVE = 64  # listeners, the state files, logs, the event loop's own


def fd_budget(config: Config) -> dict[str, int]:
    """The file descriptors the configuration may hold at once, by user."""
    server = config.server
    return {
        "probes": server.max_concurrent_probes * 2,  # a socket, or an exec check's pipe pair
        "DNS over TCP": server.tcp_max_connections,
        "the HTTP API": server.api_max_connections if server.http_listen is not None else 0,
        "listeners and files": FD_RESERVE + 2 * len(server.dns_listen),
    }


class ProbeBudget:
    """A token bucket of probe starts: `rate` a second, in bursts of at most 10 ms worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate / 100)
        self.tokens = self.burst
        self.at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False
