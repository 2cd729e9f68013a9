"""The answer cache's storage: encoded replies keyed by the query's bytes after
its ID. Kept apart from the code that fills it so a ServingState can own one.

An entry is the reply without its ID (bytes), or, for answers that vary:
- Rotating: several pre-drawn variants of a weighted/all answer, served in
  turn, so answers stay spread across members by weight;
- PerClient: replies per topology-rule key of the source address (geo pools
  answering without ECS).
"""

from __future__ import annotations

DEFAULT_MAX_ENTRIES = 100_000  # ~25 MB of typical replies; then start over
VARIANTS = 16  # pre-drawn replies per random answer


class Rotating:
    __slots__ = ("index", "replies")

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.index = 0

    def next(self) -> bytes:
        self.index = (self.index + 1) % len(self.replies)
        return self.replies[self.index]


class PerClient:
    __slots__ = ("by_key",)

    def __init__(self) -> None:
        self.by_key: dict[int, bytes | Rotating] = {}


Entry = bytes | Rotating | PerClient


class AnswerCache:
    __slots__ = ("client_keys", "max_entries", "tcp", "udp")

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        # UDP and TCP replies differ (truncation), so they never share entries.
        self.udp: dict[bytes, Entry] = {}
        self.tcp: dict[bytes, Entry] = {}
        self.client_keys: dict[str, int] = {}  # source address -> topology key
        self.max_entries = max_entries

    def table(self, udp: bool) -> dict[bytes, Entry]:
        table = self.udp if udp else self.tcp
        if len(table) >= self.max_entries:
            # A flood of distinct names (random subdomains) must not grow memory without
            # bound; starting over is cheap and the hot names come straight back.
            table.clear()
        return table
