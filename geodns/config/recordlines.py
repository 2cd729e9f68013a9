"""A fast reader for the common shape of a big zone file: under a top-level
`records:` key, one record per line as a flow mapping of plain scalars,

    records:
      h0: {type: A, value: 10.0.0.0}
      "*.w": {type: CNAME, value: geo}

Read through libyaml's events, each such line costs ~18 us in Python (seven
events, their marks, the located tree): 3.6 s of a 200,000-record zone's 7 s.
Here a line that matches a strict pattern becomes the same YMap, with the same
positions, for ~2 us. Lines of any other one-line flow mapping (a quoted value
with spaces, say) are read by YAML one at a time; anything else in the block
(a multi-line record, an anchor, a comment after a record, a tab) makes the
whole file go through YAML as before. What comes out is what the YAML reader
would build, marks and duplicate-key problems included (a property test
compares the two on generated files).
"""

from __future__ import annotations

import re
from typing import Any

from geodns.config.yamlload import YList, YMap, load_text, plain_scalar
from geodns.errors import Issue, Location

_RECORDS = re.compile(r"^records:[ \t]*(?:#.*)?$", re.MULTILINE)
# A name: plain (no indicator first, no flow or comment characters), or quoted
# with nothing to unescape. A value: a plain scalar without spaces.
_NAME = r"""[A-Za-z0-9_][A-Za-z0-9_.\-]*|"[^"\\\n]*"|'[^'\n]*'"""
_VALUE = r"(?:[A-Za-z0-9_./+=]|-(?=[^\s,\[\]{}#'\"]))[^\s,\[\]{}#'\"]*(?<!:)"
_KEY = r"[A-Za-z_]+"
_PAIR = rf"({_KEY}): ({_VALUE})"
_FAST = re.compile(rf"( +)({_NAME}): \{{({_PAIR}(?:, {_PAIR})*)\}}[ \t]*")
_KEYS: dict[str, Any] = {}  # "type", "value", ...: read once
_ONE_LINER = re.compile(rf"( +)({_NAME}): (\{{[^#&*!|>{{}}\n]*\}})[ \t]*")
_BLANK = re.compile(r"[ \t]*(?:#.*)?")


def load_zone_text(text: str, filename: str, issues: list[Issue]) -> Any:
    """A zone file's document, as `yamlload.load_text` reads it, faster."""
    found: list[Issue] = []
    split = split_records(text, filename, found)
    if split is not None:
        rest, records, line, col = split
        doc = load_text(rest, filename, found)
        if isinstance(doc, YMap) and "records" in doc and doc["records"] is None:
            doc["records"] = records
            doc.marks["records"] = (line, col, *records.start)
            # In the order YAML finds them: through the file (the block's own first).
            issues.extend(sorted(found, key=lambda issue: (issue.where.line, issue.where.col)))
            return doc
    return load_text(text, filename, issues)  # not that shape after all: YAML reads it all


def split_records(text: str, filename: str, issues: list[Issue]) -> tuple[str, YMap, int, int] | None:
    """The records block read line by line, and the text with its lines blanked
    (for YAML to read the rest, line numbers unchanged); with the `records:` key's
    line and column. None when the file is not of that shape (YAML reads it all)."""
    found = _RECORDS.search(text)
    if found is None or _RECORDS.search(text, found.end()) is not None:
        return None
    start = found.end() + 1
    lines = text[start:].split("\n")
    key_line = text.count("\n", 0, found.start()) + 1
    records = YMap()
    records.file, records.marks = filename, {}
    marks = records.marks
    pending: list[Issue] = []
    indent = ""
    taken = 0
    for offset, line in enumerate(lines):
        if line and line[0] not in " \t#":
            break  # the next top-level key: the block ends
        taken = offset + 1
        number = key_line + 1 + offset
        fast = _FAST.fullmatch(line)
        if fast is not None:
            indent, ok = _indent(indent, fast.group(1))
            value = _fast_record(fast, filename, number)
            if value is None or not ok:
                return None  # a duplicate key inside, or another indent: YAML reads and reports it
            name_text = fast.group(2)
        elif (one := _ONE_LINER.fullmatch(line)) is not None:
            indent, ok = _indent(indent, one.group(1))
            if not ok:
                return None
            value = _one_liner(one, filename, number, pending)
            name_text = one.group(2)
            if value is None:
                return None
        elif _BLANK.fullmatch(line):
            continue
        else:
            return None
        try:
            name = _name(name_text)
        except ValueError:
            return None
        column = len(indent) + 1
        if not marks:
            records.start = (number, column)
        if name in records:
            pending.append(
                Issue(
                    Location(filename, number, column),
                    f"duplicate key {name!r} (first defined at line {marks[name][0]})",
                )
            )
            continue
        records[name] = value
        marks[name] = (number, column, number, column + len(name_text) + 2)
    if not marks:
        return None
    issues.extend(pending)
    return text[:start] + "\n" * taken + "\n".join(lines[taken:]), records, key_line, 1


def _indent(seen: str, this: str) -> tuple[str, bool]:
    return this, not seen or seen == this


def _name(text: str) -> Any:
    if text[0] in "\"'":
        return text[1:-1]
    return plain_scalar(text)


def _fast_record(match: re.Match[str], filename: str, number: int) -> YMap | None:
    """The flow mapping of a line the pattern matched: its pairs are `key: value`
    joined by ", ", neither part holding a space or a comma, so splitting is exact."""
    at = match.start(3) + 1  # 1-based column of the first key
    value = YMap()
    value.file, value.start, value.marks = filename, (number, at - 1), {}
    marks = value.marks
    for pair in match.group(3).split(", "):
        key_text, item_text = pair.split(": ", 1)
        try:
            key = _KEYS.get(key_text) or _KEYS.setdefault(key_text, plain_scalar(key_text))
            item = plain_scalar(item_text)
        except ValueError:
            return None
        if key in value:
            return None
        value[key] = item
        marks[key] = (number, at, number, at + len(key_text) + 2)
        at += len(pair) + 2
    return value


def _one_liner(match: re.Match[str], filename: str, number: int, issues: list[Issue]) -> YMap | None:
    """A one-line flow mapping of any other kind, read by YAML alone and moved to
    its place in the file (line and column)."""
    col = match.start(3)  # 0-based column of its '{'
    found: list[Issue] = []
    value = load_text(match.group(3), filename, found)
    for issue in found:
        where = issue.where
        issues.append(Issue(Location(where.file, number, where.col + col), issue.message))
    if not isinstance(value, YMap):
        return None
    _move(value, number, col)
    return value


def _move(value: Any, line: int, col: int) -> None:
    """Positions read from a one-line snippet, moved to where it sits in the file."""
    if isinstance(value, YMap):
        value.start = (line, value.start[1] + col)
        value.marks = {k: (line, kc + col, line, vc + col) for k, (_kl, kc, _vl, vc) in value.marks.items()}
        for item in value.values():
            _move(item, line, col)
    elif isinstance(value, YList):
        value.start = (line, value.start[1] + col)
        value.item_marks = [(line, c + col) for _l, c in value.item_marks]
        for item in value:
            _move(item, line, col)
