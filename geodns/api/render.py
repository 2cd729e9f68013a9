"""Documents the API serves, rendered in steps so that a big one never holds the
answer loop: /metrics with 2,000 members took ~50 ms in one piece, /v1/status
~13 ms, and the status page asks every 2 s per open tab.

A renderer is a generator that yields between small pieces of work and returns
the bytes; `drive` runs one on the event loop a fraction of a millisecond at a
time. `Rendered` keeps the last result briefly and lets concurrent requests share
one rendering.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from typing import cast

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector, CollectorRegistry

from geodns.steps import PENDING, T, step
from geodns.steps import Steps as StepsOf

SLICE = 0.0002  # seconds of rendering per event-loop turn
SAMPLES_PER_STEP = 50
GZIP_STEP = 32 * 1024  # bytes compressed per step (~0.1 ms at level 1)

Steps = StepsOf[bytes]  # a renderer's steps, returning the document


async def drive(steps: StepsOf[T], slice_seconds: float = SLICE) -> T:
    """The steps on the event loop, `slice_seconds` of them per turn: whatever
    waits (a datagram, a probe's reply) runs in between."""
    turn_ends = time.perf_counter() + slice_seconds
    while (result := step(steps)) is PENDING:
        if time.perf_counter() >= turn_ends:
            await asyncio.sleep(0)
            turn_ends = time.perf_counter() + slice_seconds
    return cast(T, result)


class _One(Collector):
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterator[Metric]:
        yield self.family


def metrics_steps(registry: CollectorRegistry) -> Steps:
    """prometheus_client's own text format, a few dozen samples per step: each
    family is collected sample by sample (a labelled metric of 2,000 members took
    ~10 ms to collect at once), cut into parts, each part formatted by
    generate_latest, and the repeated HELP/TYPE lines of later parts dropped."""
    out: list[bytes] = []
    for collector in _collectors(registry):
        families = yield from _collect(collector)
        for family in families:
            samples = family.samples or []
            for start in range(0, max(1, len(samples)), SAMPLES_PER_STEP):
                part = Metric(family.name, family.documentation, family.type, family.unit)
                part.samples = samples[start : start + SAMPLES_PER_STEP]
                text = generate_latest(_One(part))
                if start:
                    text = text.split(b"\n", 2)[2]  # HELP and TYPE once per family
                out.append(text)
                yield
    return b"".join(out)


def _collectors(registry: CollectorRegistry) -> list[Collector]:
    with registry._lock:
        return list(registry._collector_to_names)


def _collect(collector: Collector) -> Generator[None, None, list[Metric]]:
    """A collector's families; a labelled metric's samples a hundred at a time
    (through the generator prometheus_client's own collect() drains at once). The
    tests compare the result with generate_latest byte for byte."""
    if not isinstance(collector, MetricWrapperBase):
        return list(collector.collect())
    family = collector._get_metric()  # type: ignore[no-untyped-call]
    for i, sample in enumerate(collector._samples()):
        family.add_sample(collector._name + sample[0], *sample[1:])
        if i % 100 == 99:
            yield
    return [family]


def joined(pieces: Iterable[bytes | None]) -> Steps:
    """Bytes from a generator of pieces (None: a step boundary, no output)."""
    out: list[bytes] = []
    for piece in pieces:
        if piece is None:
            yield
        else:
            out.append(piece)
    return b"".join(out)


class Rendered:
    """The last rendering, reused while its key is the same and it is younger than
    `ttl`; concurrent requests wait for the one rendering in flight. Each rendering
    is also kept gzipped (in steps too): a megabyte of status for 2,000 members is
    ~10x smaller, and writing it to a socket is the loop's time as well."""

    def __init__(self, render: Callable[[], Steps], key: Callable[[], Hashable], ttl: float) -> None:
        self.render = render
        self.key = key
        self.ttl = ttl
        self._last: tuple[Hashable, float, bytes, bytes] | None = None
        self._running: asyncio.Task[tuple[bytes, bytes]] | None = None

    async def get(self, *, gzipped: bool = False) -> bytes:
        key, now = self.key(), time.monotonic()
        last = self._last
        if last is not None and last[0] == key and now - last[1] < self.ttl:
            return last[3] if gzipped else last[2]
        if self._running is None or self._running.done():
            # A task of its own: a client that goes away does not cancel it for the others.
            self._running = asyncio.get_running_loop().create_task(self._render(key, now))
        body, packed = await asyncio.shield(self._running)
        return packed if gzipped else body

    async def _render(self, key: Hashable, started: float) -> tuple[bytes, bytes]:
        body = await drive(self.render())
        packed = await drive(_gzip_steps(body))
        self._last = (key, started, body, packed)
        return body, packed


def _gzip_steps(body: bytes) -> Steps:
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing, the fastest level
    out = []
    for start in range(0, len(body), GZIP_STEP):
        out.append(packer.compress(body[start : start + GZIP_STEP]))
        yield
    out.append(packer.flush())
    return b"".join(out)
