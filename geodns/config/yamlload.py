"""YAML loading that remembers where every key and value came from.

PyYAML's SafeLoader is used for safety (no object construction); on top of it
mappings become `YMap` and sequences `YList`, which carry the location of
themselves, of each key and of each value, so that the parser can point a user
at FILE:LINE:COL. Duplicate keys, which PyYAML silently resolves to the last
one, are reported: a duplicated record name in a zone is always a mistake.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from geodns.errors import Issue, Location


class YMap(dict[Any, Any]):
    """A mapping that knows where it starts and where each key and value is.

    Positions are kept as plain (line, column) tuples and turned into
    Locations only when an error needs one: a 100,000-record zone has 700,000
    nodes, and building a Location for each cost seconds at start-up."""

    file: str
    start: tuple[int, int]
    marks: dict[Any, tuple[int, int, int, int]]  # key line, key col, value line, value col

    @classmethod
    def at(cls, where: Location) -> YMap:
        m = cls()
        m.file, m.start, m.marks = where.file, (where.line, where.col), {}
        return m

    @property
    def loc(self) -> Location:
        return Location(self.file, *self.start)

    def key_loc(self, key: Any) -> Location:
        mark = self.marks.get(key)
        return Location(self.file, mark[0], mark[1]) if mark else self.loc

    def value_loc(self, key: Any) -> Location:
        mark = self.marks.get(key)
        return Location(self.file, mark[2], mark[3]) if mark else self.loc


class YList(list[Any]):
    """A sequence that knows where it starts and where each item is."""

    file: str
    start: tuple[int, int]
    item_marks: list[tuple[int, int]]

    @property
    def loc(self) -> Location:
        return Location(self.file, *self.start)

    def item_loc(self, index: int) -> Location:
        if index < len(self.item_marks):
            return Location(self.file, *self.item_marks[index])
        return self.loc


# libyaml's parser when PyYAML was built with it (the pure-Python scanner took
# ~45 of 57 s to read a 100,000-record zone); we only read its events.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

STR, BOOL, INT, FLOAT, NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "int", "float", "null"))
_TYPED_FIRST = frozenset("tTfFnN~-+.0123456789")  # what a typed plain scalar may start with
_BOOLS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_INT = re.compile(r"(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


def _plain_tag(value: str) -> str:
    """YAML 1.2's narrow typing for plain scalars: YAML 1.1 reads 1:30 as 90,
    `no` as false and 2026-11-26 as a date; in DNS data those are strings.
    Only true/false, decimal or 0x integers, floats and null are typed."""
    if value in _BOOLS:
        return BOOL
    if _INT.match(value):
        return INT
    if value in _NULLS:
        return NULL
    if _FLOAT.match(value):
        return FLOAT
    return STR


def plain_scalar(value: str) -> Any:
    """A plain (unquoted) scalar's value, typed as the reader types it; ValueError
    when it cannot be read (a tag it does not know, a number it cannot parse)."""
    if value and (value[0] not in _TYPED_FIRST or value.count(".") > 1):
        return value  # no bool, int, null or float starts so, nor has two dots (an address)
    return _scalar(_plain_tag(value), value)


def _scalar(tag: str, value: str) -> Any:
    if tag == STR:
        return value
    if tag == INT:
        return int(value, 16) if value.startswith("0x") else int(value)
    if tag == BOOL:
        return value.lower() == "true"
    if tag == NULL:
        return None
    if tag == FLOAT:
        lowered = value.lower()
        if lowered.endswith(".inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        if lowered == ".nan":
            return float("nan")
        return float(value.replace("_", ""))
    raise _TagError(f"unsupported tag {tag!r}")


_SCALARS = (str, int, float, bool)
MAX_DEPTH = 64  # no configuration needs more; libyaml's own limit comes after Python's stack
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_ZONE_BYTES = 1024 * 1024 * 1024  # a million records are ~50 MB of YAML


def too_big(size: int, limit: int) -> str:
    return f"file is {size:,} bytes, more than the {limit:,} a file may have"


class _TagError(ValueError):
    pass


class _Builder:
    """Builds YMap / YList / scalars straight from libyaml's events.

    PyYAML's own path (compose a node tree, then construct) took ~7 s for a
    100,000-record zone; the events alone take ~0.5 s. Anchors, aliases and
    `<<` merge keys work as in SafeLoader."""

    def __init__(self, loader: Any, filename: str, issues: list[Issue]) -> None:
        self.loader = loader
        self.filename = filename
        self.issues = issues
        self.anchors: dict[str, Any] = {}

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # StreamStart
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # DocumentStart
        data = self.node()
        loader.get_event()  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            mark = loader.peek_event().start_mark
            self.issues.append(
                Issue(
                    Location(self.filename, mark.line + 1, mark.column + 1),
                    "expected a single YAML document, found another",
                )
            )
        return data

    def node(self, depth: int = 0) -> Any:
        event = self.loader.get_event()
        if depth > MAX_DEPTH:
            raise yaml.MarkedYAMLError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise yaml.MarkedYAMLError(None, None, f"unknown alias *{event.anchor}", event.start_mark)  # type: ignore[arg-type]
            return self.anchors[event.anchor]
        mark = event.start_mark
        if isinstance(event, yaml.ScalarEvent):
            tag = (
                _plain_tag(event.value)
                if event.implicit[0]
                else (event.tag if event.tag not in (None, "!") else STR)
            )
            try:
                value = _scalar(tag, event.value)
            except (_TagError, ValueError) as exc:
                raise yaml.MarkedYAMLError(None, None, str(exc), mark) from None
        elif isinstance(event, yaml.SequenceStartEvent):
            value = YList()
            value.file, value.start, value.item_marks = self.filename, (mark.line + 1, mark.column + 1), []
            if event.anchor:
                self.anchors[event.anchor] = value
            while not self.loader.check_event(yaml.SequenceEndEvent):
                item = self.loader.peek_event().start_mark
                value.item_marks.append((item.line + 1, item.column + 1))
                value.append(self.node(depth + 1))
            self.loader.get_event()
        else:
            value = self.mapping(event, depth)
        if event.anchor:
            self.anchors[event.anchor] = value
        return value

    def mapping(self, event: Any, depth: int) -> YMap:
        mark = event.start_mark
        data = YMap()
        data.file, data.start, data.marks = self.filename, (mark.line + 1, mark.column + 1), {}
        if event.anchor:
            self.anchors[event.anchor] = data
        marks = data.marks
        merged: list[Any] = []
        loader = self.loader
        while not loader.check_event(yaml.MappingEndEvent):
            k = loader.peek_event()
            k_mark = k.start_mark
            merge = isinstance(k, yaml.ScalarEvent) and k.value == "<<" and k.implicit[0]
            key = self.node(depth + 1)
            v = loader.peek_event().start_mark
            value = self.node(depth + 1)
            if merge:
                merged += value if isinstance(value, list) else [value]
                continue
            # Locations are built only for problems: a million-record zone has five
            # million keys, and a Location each cost seconds.
            if not isinstance(key, _SCALARS) and key is not None:
                where = Location(self.filename, k_mark.line + 1, k_mark.column + 1)
                self.issues.append(Issue(where, "mapping keys must be scalars"))
                continue
            if key in data:
                where = Location(self.filename, k_mark.line + 1, k_mark.column + 1)
                self.issues.append(
                    Issue(where, f"duplicate key {key!r} (first defined at line {marks[key][0]})")
                )
                continue
            data[key] = value
            marks[key] = (k_mark.line + 1, k_mark.column + 1, v.line + 1, v.column + 1)
        loader.get_event()
        for source in merged:  # explicit keys win over merged ones, whatever their order
            if not isinstance(source, YMap):
                self.issues.append(Issue(data.loc, "'<<' merges only mappings"))
                continue
            for key, value in source.items():
                if key not in data:
                    data[key] = value
                    marks[key] = source.marks.get(key, (*source.start, *source.start))
        return data


def load_text(text: str, filename: str, issues: list[Issue]) -> Any:
    """Parse one YAML document; syntax errors and duplicates go to `issues`.

    Returns None when the document is empty or unreadable.
    """
    loader = _Base(text)
    try:
        return _Builder(loader, filename, issues).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename, 1, 1)
        tab = _tab_near(text, mark)
        if tab is not None:
            issues.append(
                Issue(
                    Location(filename, tab[0], tab[1]),
                    "tab character: YAML does not allow tabs for indentation; indent with spaces",
                )
            )
            return None
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark is not None:
            start = exc.context_mark
            message += f" ({exc.context} started at line {start.line + 1}, column {start.column + 1})"
        issues.append(Issue(where, message))
        return None
    except yaml.YAMLError as exc:
        issues.append(Issue(Location(filename, 1, 1), f"YAML error: {exc}"))
        return None
    except RecursionError:  # a last resort: MAX_DEPTH stops real documents well before
        issues.append(Issue(Location(filename, 1, 1), "YAML error: nested too deeply to read"))
        return None
    finally:
        loader.dispose()


def _tab_near(text: str, mark: Any) -> tuple[int, int] | None:
    """The tab that broke parsing, as (line, col): PyYAML's own words for it ("found
    character that cannot start any token") send people looking for the wrong thing.
    Looks at the error's line and the one before (a tab-indented line can make the
    parser fail at the next)."""
    if mark is None:
        return None
    lines = text.split("\n")
    for index in (mark.line, mark.line - 1):
        if 0 <= index < len(lines):
            line = lines[index]
            indent = len(line) - len(line.lstrip(" \t"))
            if "\t" in line[: indent + 1]:
                return index + 1, line.index("\t") + 1
    return None


def load_file(path: Path, issues: list[Issue]) -> Any:
    """Read and parse a YAML file; an unreadable or oversized file is an issue, not an exception."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            issues.append(Issue(Location(str(path), 1, 1), too_big(size, MAX_CONFIG_BYTES)))
            return None
        data = path.read_bytes()
    except OSError as exc:
        issues.append(Issue(Location(str(path), 1, 1), f"cannot read file: {exc}"))
        return None
    text = decode(str(path), data, issues)
    return None if text is None else load_text(text, str(path), issues)


def decode(filename: str, data: bytes, issues: list[Issue]) -> str | None:
    """UTF-8 text, or None with the bad byte's line:col in `issues`."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        issues.append(_not_utf8(filename, data, exc))
        return None


def _not_utf8(filename: str, data: bytes, exc: UnicodeDecodeError) -> Issue:
    """Where the bad byte is, as line:col (a text editor's terms, not a byte offset)."""
    before = data[: exc.start]
    line = before.count(b"\n") + 1
    line_start = before.rfind(b"\n") + 1
    col = len(before[line_start:].decode("utf-8", errors="replace")) + 1
    bad = data[exc.start : exc.end].hex(" ")
    return Issue(
        Location(filename, line, col),
        f"not UTF-8: byte(s) {bad} here (save the file as UTF-8; Latin-1 is a common cause)",
    )
