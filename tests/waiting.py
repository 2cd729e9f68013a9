"""Waiting for a condition in async tests, with a bound and a message saying what
was awaited (a poll, because the conditions are states of real processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def until(condition: Callable[[], object], timeout: float, what: str = "the condition") -> float:
    """Seconds it took for `condition()` to become true; fails after `timeout`."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < timeout, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - began
