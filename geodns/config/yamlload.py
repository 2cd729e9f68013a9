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
from yaml.nodes import MappingNode, Node, SequenceNode

from geodns.errors import Issue, Location


class YMap(dict[Any, Any]):
    """A mapping with `loc` (where it starts), `key_locs` and `value_locs`."""

    loc: Location
    key_locs: dict[Any, Location]
    value_locs: dict[Any, Location]

    def key_loc(self, key: Any) -> Location:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key: Any) -> Location:
        return self.value_locs.get(key, self.loc)


class YList(list[Any]):
    """A sequence with `loc` and the location of each item in `item_locs`."""

    loc: Location
    item_locs: list[Location]

    def item_loc(self, index: int) -> Location:
        return self.item_locs[index] if index < len(self.item_locs) else self.loc


def _loc(filename: str, node: Node) -> Location:
    mark = node.start_mark
    return Location(filename, mark.line + 1, mark.column + 1)


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str, filename: str, issues: list[Issue]) -> None:
        super().__init__(stream)
        self.filename = filename
        self.issues = issues

    def construct_yaml_map(self, node: MappingNode) -> Any:
        data = YMap()
        data.loc = _loc(self.filename, node)
        data.key_locs = {}
        data.value_locs = {}
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                self.issues.append(Issue(_loc(self.filename, key_node), "mapping keys must be scalars"))
                continue
            if key in data:
                first = data.key_locs[key]
                self.issues.append(
                    Issue(
                        _loc(self.filename, key_node),
                        f"duplicate key {key!r} (first defined at line {first.line})",
                    )
                )
                continue
            data[key] = self.construct_object(value_node, deep=True)
            data.key_locs[key] = _loc(self.filename, key_node)
            data.value_locs[key] = _loc(self.filename, value_node)

    def construct_yaml_seq(self, node: SequenceNode) -> Any:
        data = YList()
        data.loc = _loc(self.filename, node)
        data.item_locs = [_loc(self.filename, child) for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)
# YAML 1.1 reads 1:30 as sexagesimal 90 and `on`/`no` as booleans; DNS values
# like a TXT "no" are far likelier. We keep YAML 1.2's narrower rules: only
# true/false are booleans and integers are plain decimal (or 0x hex).
_DROPPED_TAGS = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)


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
