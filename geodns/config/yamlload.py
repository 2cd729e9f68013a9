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
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

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


def _pos(node: Node) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


# libyaml's parser when PyYAML was built with it: the pure-Python scanner took
# ~45 of 57 s to read a 100,000-record zone; constructors and resolvers stay ours.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

STR, BOOL, INT, FLOAT, NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "int", "float", "null"))
_BOOLS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_INT = re.compile(r"(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


class _Loader(_Base):  # type: ignore[misc]
    def __init__(self, stream: str, filename: str, issues: list[Issue]) -> None:
        super().__init__(stream)
        self.filename = filename
        self.issues = issues

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """YAML 1.2's narrow typing for plain scalars: YAML 1.1 reads 1:30 as 90,
        `no` as false and 2026-11-26 as a date; in DNS data those are strings.
        Only true/false, decimal or 0x integers, floats and null are typed."""
        if kind is ScalarNode and implicit[0]:
            if value in _BOOLS:
                return BOOL
            if _INT.match(value):
                return INT
            if value in _NULLS:
                return NULL
            if _FLOAT.match(value):
                return FLOAT
            return STR
        return super().resolve(kind, value, implicit)

    def construct_yaml_map(self, node: MappingNode) -> Any:
        data = YMap()
        data.file, data.start, data.marks = self.filename, _pos(node), {}
        yield data
        self.flatten_mapping(node)
        marks = data.marks
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                where = Location(self.filename, *_pos(key_node))
                self.issues.append(Issue(where, "mapping keys must be scalars"))
                continue
            if key in data:
                where = Location(self.filename, *_pos(key_node))
                first = marks[key][0]
                self.issues.append(Issue(where, f"duplicate key {key!r} (first defined at line {first})"))
                continue
            data[key] = self.construct_object(value_node, deep=True)
            k, v = key_node.start_mark, value_node.start_mark
            marks[key] = (k.line + 1, k.column + 1, v.line + 1, v.column + 1)

    def construct_yaml_seq(self, node: SequenceNode) -> Any:
        data = YList()
        data.file, data.start = self.filename, _pos(node)
        data.item_marks = [_pos(child) for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)


def load_text(text: str, filename: str, issues: list[Issue]) -> Any:
    """Parse one YAML document; syntax errors and duplicates go to `issues`.

    Returns None when the document is empty or unreadable.
    """
    loader = _Loader(text, filename, issues)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(filename, mark.line + 1, mark.column + 1) if mark else Location(filename, 1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark is not None:
            start = exc.context_mark
            message += f" ({exc.context} started at line {start.line + 1}, column {start.column + 1})"
        issues.append(Issue(where, message))
        return None
    except yaml.YAMLError as exc:
        issues.append(Issue(Location(filename, 1, 1), f"YAML error: {exc}"))
        return None
    finally:
        loader.dispose()


def load_file(path: Path, issues: list[Issue]) -> Any:
    """Read and parse a YAML file; an unreadable file is an issue, not an exception."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(Issue(Location(str(path), 1, 1), f"cannot read file: {exc}"))
        return None
    return load_text(text, str(path), issues)
