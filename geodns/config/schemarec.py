"""What the config readers accept, recorded as they read (pure): the source of
`geodns schema`. Each converter carries the JSON Schema of the values it accepts;
while a recording is active, every key a reader asks for is noted with its path,
its converter's schema and whether it is required. The schema is thus generated
from the one place the config is defined, never kept by hand beside it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__json_schema__"


def accepts(schema: dict[str, Any]) -> Callable[[F], F]:
    """Decorate a converter with the JSON Schema of what it accepts."""

    def mark(conv: F) -> F:
        setattr(conv, _ATTR, schema)
        return conv

    return mark


def schema_of(conv: Callable[..., Any] | None) -> dict[str, Any]:
    return dict(getattr(conv, _ATTR, {})) if conv is not None else {}


@dataclass(frozen=True)
class Seen:
    path: str  # the reader's path: "pools.web.members[0]"
    key: str
    schema: dict[str, Any] | None  # None: read raw, its structure comes from deeper readers
    required: bool = False


@dataclass
class Recorder:
    seen: list[Seen] = field(default_factory=list)


_active: list[Recorder] = []


def record(path: str, key: str, schema: dict[str, Any] | None, *, required: bool = False) -> None:
    if _active:
        _active[-1].seen.append(Seen(path, key, schema, required))


def active() -> bool:
    return bool(_active)


@contextlib.contextmanager
def recording() -> Iterator[Recorder]:
    recorder = Recorder()
    _active.append(recorder)
    try:
        yield recorder
    finally:
        _active.pop()
