"""Work done in steps: a generator that yields between small pieces of work and
returns its result. The same code runs at once where nothing waits (a start-up,
a test, a child process) and a slice at a time on the event loop, so a big zone
or document never holds the answers for long.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import TypeVar, cast

T = TypeVar("T")
Steps = Generator[None, None, T]


_PENDING = object()


def _step(steps: Steps[T]) -> object:
    """One step: the result when that was the last one, else _PENDING."""
    try:
        next(steps)
    except StopIteration as done:
        return done.value
    return _PENDING


def drain(steps: Steps[T]) -> T:
    """Every step at once: the result."""
    while (result := _step(steps)) is _PENDING:
        pass
    return cast(T, result)


async def drive(steps: Steps[T], slice_seconds: float) -> T:
    """The steps on the event loop, `slice_seconds` of them per turn: whatever
    waits (a datagram, a probe's reply) runs in between."""
    turn_ends = time.perf_counter() + slice_seconds
    while (result := _step(steps)) is _PENDING:
        if time.perf_counter() >= turn_ends:
            await asyncio.sleep(0)
            turn_ends = time.perf_counter() + slice_seconds
    return cast(T, result)
