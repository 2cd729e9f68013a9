"""Reading typed values out of located YAML, collecting every problem (pure).

Each reader returns the value, or None after recording an Issue, so a parser
can keep going and report everything wrong with a file in one run.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from geodns.config.schemarec import accepts, record, schema_of
from geodns.config.yamlload import YList, YMap
from geodns.errors import Issue, Location

T = TypeVar("T")


class Invalid(ValueError):
    """Raised by a converter; the parser turns it into an Issue at the value."""


class Ctx:
    """The issue list shared by every reader of one configuration."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, where: Location, message: str) -> None:
        self.issues.append(Issue(where, message))


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Fields:
    """The keys of one mapping, read once each; leftovers are unknown keys."""

    def __init__(self, ctx: Ctx, mapping: YMap, path: str) -> None:
        self.ctx = ctx
        self.map = mapping
        self.path = path
        self.known: list[str] = []
        record(path, "", None)  # a mapping is read here (even one that takes no keys)

    def where(self, key: str) -> Location:
        return self.map.value_loc(key)

    def label(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> None:
        self.ctx.error(self.where(key), f"{self.label(key)}: {message}")

    def has(self, key: str) -> bool:
        self.known.append(key)
        record(self.path, key, None)
        return key in self.map

    def get(
        self, key: str, conv: Callable[[Any], T], default: T | None = None, *, required: bool = False
    ) -> T | None:
        self.known.append(key)
        record(self.path, key, schema_of(conv), required=required)
        if key not in self.map:
            if required:
                self.ctx.error(self.map.loc, f"{self.path or 'top level'}: missing required key {key!r}")
            return default
        try:
            return conv(self.map[key])
        except Invalid as exc:
            self.error(key, str(exc))
            return None

    def get_list(
        self,
        key: str,
        conv: Callable[[Any], T],
        default: list[T] | None = None,
        *,
        allow_scalar: bool = False,
    ) -> list[T] | None:
        """A list whose every bad item is reported at its own location.

        Returns None when the value is not a list or any item is bad."""
        self.known.append(key)
        listed: dict[str, Any] = {"type": "array", "items": schema_of(conv)}
        record(self.path, key, {"anyOf": [schema_of(conv), listed]} if allow_scalar else listed)
        if key not in self.map:
            return default
        value = self.map[key]
        if not isinstance(value, YList):
            if allow_scalar and not isinstance(value, dict):
                return self.get(key, lambda v: [conv(v)])
            self.error(key, f"expected a list, got {type_name(value)}")
            return None
        out: list[T] = []
        ok = True
        for index, item in enumerate(value):
            try:
                out.append(conv(item))
            except Invalid as exc:
                self.ctx.error(value.item_loc(index), f"{self.label(key)}[{index}]: {exc}")
                ok = False
        return out if ok else None

    def raw(self, key: str) -> Any:
        self.known.append(key)
        record(self.path, key, None)
        return self.map.get(key)

    def finish(self) -> None:
        """Report every key nobody asked for, with a suggestion when one is close."""
        for key in self.map:
            if key in self.known:
                continue
            text = str(key)
            hint = difflib.get_close_matches(text, self.known, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            allowed = ", ".join(sorted(set(self.known)))
            self.ctx.error(
                self.map.key_loc(key),
                f"unknown key {text!r} in {self.path or 'top level'}{suggestion}; known keys: {allowed}",
            )


def mapping(ctx: Ctx, value: Any, where: Location, path: str, *, allow_null: bool = False) -> YMap | None:
    if value is None and allow_null:
        return YMap.at(where)
    if isinstance(value, YMap):
        return value
    ctx.error(where, f"{path}: expected a mapping, got {type_name(value)}")
    return None


# Converters: value -> T, raise Invalid with a message meant for a person.


def each_mapping(ctx: Ctx, items: YList, path: str) -> Iterator[tuple[str, YMap, Fields]]:
    """The items of a list of mappings, each with its path (`path[3]`) and its
    Fields; an item that is not a mapping is reported and skipped."""
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        m = mapping(ctx, item, items.item_loc(i), where)
        if m is not None:
            yield where, m, Fields(ctx, m, where)


@accepts({"type": "string", "minLength": 1})
def to_str(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise Invalid(f"expected a non-empty string, got {type_name(value)}")


@accepts({"type": "boolean"})
def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Invalid(f"expected true or false, got {type_name(value)}")


def int_in(lo: int, hi: int) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {type_name(value)}")
        if not lo <= value <= hi:
            raise Invalid(f"{value} is out of range {lo}..{hi}")
        return value

    return accepts({"type": "integer", "minimum": lo, "maximum": hi})(conv)


def int_or_auto(lo: int, hi: int) -> Callable[[Any], int]:
    """An integer in lo..hi, or the word auto (0)."""
    number = int_in(lo, hi)

    def conv(value: Any) -> int:
        if value == "auto":
            return 0
        try:
            return number(value)
        except Invalid as exc:
            raise Invalid(f"{exc} (or auto)") from None

    return accepts({"anyOf": [schema_of(number), {"const": "auto"}]})(conv)


to_port = int_in(1, 65535)
to_ttl = int_in(0, 2**31 - 1)  # RFC 2181 section 8

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@accepts({"type": "string", "pattern": r"^\s*(\d+(\.\d+)?(ms|s|m|h))+\s*$"})
def to_duration(value: Any) -> float:
    """'500ms', '2s', '1m', '1h', '1m30s' -> seconds. A bare number is refused:
    is 2 two seconds or two milliseconds? Users must say."""
    if not isinstance(value, str):
        raise Invalid(f"bad duration {value!r}: write it with a unit, e.g. 500ms, 2s, 1m")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise Invalid(f"bad duration {value!r}: write it with a unit, e.g. 500ms, 2s, 1m")
    if total <= 0:
        raise Invalid(f"duration {value!r} must be greater than zero")
    return total


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|kB|KB|MB|GB)")
_UNIT_BYTES = {
    "B": 1,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}


def to_size(lo: int, hi: int) -> Callable[[Any], int]:
    """'64MiB', '512KiB', '1GB' -> bytes within lo..hi. Like durations, a bare number
    is refused: bytes or megabytes? Users must say."""

    def conv(value: Any) -> int:
        match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise Invalid(f"bad size {value!r}: write it with a unit, e.g. 64MiB, 512KiB, 1GiB")
        size = int(match.group(1)) * _UNIT_BYTES[match.group(2)]
        if not lo <= size <= hi:
            raise Invalid(f"size {value!r} is out of range {_human(lo)}..{_human(hi)}")
        return size

    return accepts({"type": "string", "pattern": r"^\s*\d+\s*(B|KiB|MiB|GiB|kB|KB|MB|GB)\s*$"})(conv)


def _human(size: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if size >= _UNIT_BYTES[unit] and size % _UNIT_BYTES[unit] == 0:
            return f"{size // _UNIT_BYTES[unit]}{unit}"
    return f"{size}B"


@accepts({"type": "string", "minLength": 2})
def to_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected an IP address, got {type_name(value)}")
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise Invalid(f"{value!r} is not an IP address") from None


@accepts({"type": "string", "pattern": "/"})
def to_network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(to_str(value), strict=True)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not a network: {exc}") from None


def one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        text = to_str(value)
        if text not in choices:
            raise Invalid(f"{text!r} is not one of: {', '.join(choices)}{did_you_mean(text, choices)}")
        return text

    return accepts({"enum": list(choices)})(conv)


def did_you_mean(text: str, choices: Iterable[str]) -> str:
    """' (did you mean "failover"?)' for a near miss, else ''."""
    close = difflib.get_close_matches(text.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if not close:
        return ""
    original = next(c for c in choices if c.lower() == close[0])
    return f" (did you mean {original!r}?)"


def unknown(kind: str, name: str, known: Iterable[str]) -> str:
    """'unknown datacenter 'pra' (did you mean 'par'?); known: ams, par'."""
    names = sorted(known)
    return f"unknown {kind} {name!r}{did_you_mean(name, names)}; known: {', '.join(names) or 'none'}"


def beside(base: Path, text: str) -> Path:
    """A path written in a config file, relative to that file's folder, resolved as
    written: `../var` beside a config reached through a symlinked folder is the
    `var` next to that link, not next to the link's target."""
    return Path(os.path.normpath(base / text))


@accepts({"type": "number", "exclusiveMinimum": 0, "maximum": 1})
def to_fraction(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1:
        return float(value)
    raise Invalid(f"expected a fraction in (0, 1], got {value!r}")
