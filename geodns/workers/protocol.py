"""What the main process and a DNS worker say to each other, over a private
AF_UNIX socket pair: frames of a 4-byte length and a body.

Main -> worker bodies are pickles (configurations are rich objects, and both ends
are this program: the socket pair is created by the parent and inherited, nobody
else can write to it). Worker -> main bodies are JSON (plain figures): the main
process never unpickles anything.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geodns.config import Config
from geodns.config.model import ListenAddress
from geodns.health.health import ProbeKey, Status
from geodns.health.overrides import Override

MAX_FRAME = 256 * 1024 * 1024  # a configuration with every pool and topology rule fits many times over
_LENGTH = struct.Struct("!I")


class ProtocolError(Exception):
    """The other end said something that is not a frame of this protocol."""


@dataclass(frozen=True)
class Configure:
    """Serve this configuration generation (the first message, and each reload).
    `config` comes without its zones: the worker reads them from the compiled
    zone cache (`cache_dir`, keys in `config.zone_keys`), or keeps its own when
    the key is unchanged. Health comes whole: later ones are changes."""

    generation: int
    config: Config
    cache_dir: Path
    listen: tuple[ListenAddress, ...]
    version: int
    states: Mapping[ProbeKey, Status]
    overrides: tuple[Override, ...]
    workers: int = 1  # how many answer beside each other (each gets its share of the rate limit)


@dataclass(frozen=True)
class HealthChange:
    """A new health snapshot, as the statuses that changed since the previous one."""

    version: int
    changed: Mapping[ProbeKey, Status]
    overrides: tuple[Override, ...]


@dataclass(frozen=True)
class Stop:
    """Finish: close the listeners, answer nothing more, exit 0."""


Message = Configure | HealthChange | Stop


def frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


def to_worker(message: Message) -> bytes:
    return frame(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def to_main(report: Mapping[str, Any]) -> bytes:
    return frame(json.dumps(report, separators=(",", ":")).encode())


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One frame's body, or None at a clean end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("the stream ended inside a frame header") from None
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME:
        raise ProtocolError(f"a frame of {length} bytes is over the {MAX_FRAME}-byte limit")
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise ProtocolError("the stream ended inside a frame") from None


def message_from_main(body: bytes) -> Message:
    message = pickle.loads(body)  # noqa: S301 - written by our parent on a socket only it holds
    if not isinstance(message, Configure | HealthChange | Stop):
        raise ProtocolError(f"unexpected message {type(message).__name__}")
    return message


def report_from_worker(body: bytes) -> dict[str, Any]:
    try:
        report = json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"a report that is not JSON: {exc}") from None
    if not isinstance(report, dict):
        raise ProtocolError("a report that is not a JSON object")
    return report
