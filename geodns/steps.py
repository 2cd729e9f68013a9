"""Work done in steps: a generator that yields between small pieces of work and
returns its result (pure). The same code runs at once where nothing waits (a
start-up, a test, a child process) with `drain`, and a slice at a time on the
event loop with `api.render.drive`, so a big zone or document never holds the
answers for long.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar, cast

T = TypeVar("T")
Steps = Generator[None, None, T]


PENDING = object()


def step(steps: Steps[T]) -> object:
    """One step: the result when that was the last one, else PENDING."""
    try:
        next(steps)
    except StopIteration as done:
        return done.value
    return PENDING


def drain(steps: Steps[T]) -> T:
    """Every step at once: the result."""
    while (result := step(steps)) is PENDING:
        pass
    return cast(T, result)
