"""How late the event loop runs: a timer every 50 ms, and how much later it fired.

A probe that timed out while the loop itself was stalled (a burst of queries, a
slow callback, an overloaded host) has measured us, not the backend. The monitor
asks `stalled(start, end)` before it blames a target for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

PERIOD = 0.05


class LoopWatch:
    def __init__(self, keep: float = 30.0) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=int(keep / PERIOD))  # (when, lag)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop watch")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(PERIOD)
            now = loop.time()
            self.samples.append((now, max(0.0, now - before - PERIOD)))

    def recent(self, seconds: float) -> float:
        """The longest stall in the last `seconds` (for /metrics)."""
        if not self.samples:
            return 0.0
        since = self.samples[-1][0] - seconds
        return max((lag for when, lag in self.samples if when >= since), default=0.0)

    def stalled(self, start: float, end: float) -> float:
        """How long the loop was late (seconds, summed) during [start, end] (loop
        time): a probe needs several turns of the loop, and a loop late by 15 ms on
        every turn costs it as much as one long stall does."""
        total = 0.0
        for when, lag in reversed(self.samples):
            if when - lag - PERIOD > end:
                continue
            if when < start:
                break
            total += lag
        return total

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
