"""Error types. Every error a user can cause says where, in their words."""

from __future__ import annotations

from dataclasses import dataclass


class GeoDnsError(Exception):
    """Root of every error geodns raises on purpose."""


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Issue:
    where: Location
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigError(GeoDnsError):
    """A configuration with one or more problems; lists every one of them."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(str(i) for i in self.issues))
