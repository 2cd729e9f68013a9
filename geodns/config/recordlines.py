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
_PLAIN = re.compile(rf"( +)({_NAME}): \{{type: ({_VALUE}), value: ({_VALUE})\}}[ \t]*")
_FAST = re.compile(rf"( +)({_NAME}): \{{({_PAIR}(?:, {_PAIR})*)\}}[ \t]*")
_WORDS: dict[str, Any] = {}  # keys and record types ("type", "A", ...): one object each, read once
_MAX_WORDS = 256  # a file of made-up keys does not grow it for good
_ONE_LINER = re.compile(rf"( +)({_NAME}): (\{{[^#&*!|>{{}}\n]*\}})[ \t]*")
_BLANK = re.compile(r"[ \t]*(?:#.*)?")


class LineRecord:
    """A line `name: {type: T, value: V}`: T and V read, nothing else built. The
    zone reader takes it as it is (zonefile._plain_entry); only when it must say
    something about it does it ask for the located mapping (`located`). A YMap per
    record cost ~700 bytes and a microsecond: 2.2 GB at the peak of reading a
    million records."""

    __slots__ = ("file", "number", "rtype", "text", "value")

    def __init__(self, file: str, number: int, text: str, rtype: Any, value: Any) -> None:
        self.file, self.number, self.text, self.rtype, self.value = file, number, text, rtype, value

    @property
    def loc(self) -> Location:
        return Location(self.file, self.number, self.text.index("{") + 1)

    def located(self) -> YMap:
        """The mapping as the YAML reader builds it, positions and all."""
        match = _FAST.fullmatch(self.text)
        assert match is not None  # it matched the narrower pattern
        value = _fast_record(match, self.file, self.number)
        assert value is not None  # two different keys
        return value


class LineRecords(YMap):
    """The records mapping of a block read by lines: where each name and value is
    comes from its LineRecord when it has one (no mark kept per record)."""

    def key_loc(self, key: Any) -> Location:
        found = self.get(key)
        if found.__class__ is LineRecord:
            return Location(self.file, found.number, len(found.text) - len(found.text.lstrip(" ")) + 1)
        return super().key_loc(key)

    def value_loc(self, key: Any) -> Location:
        found = self.get(key)
        if found.__class__ is LineRecord:
            return found.loc
        return super().value_loc(key)


def load_zone_text(text: str, filename: str, issues: list[Issue]) -> Any:
    """A zone file's document, as `yamlload.load_text` reads it, faster."""
    found: list[Issue] = []
    split = split_records(text, filename, found)
    if split is not None:
        rest, records, line = split
        doc = load_text(rest, filename, found)
        if isinstance(doc, YMap) and "records" in doc and doc["records"] is None:
            doc["records"] = records
            doc.marks["records"] = (line, 1, *records.start)  # the pattern finds the key at the margin
            # In the order YAML finds them: through the file (the block's own first).
            issues.extend(sorted(found, key=lambda issue: (issue.where.line, issue.where.col)))
            return doc
    return load_text(text, filename, issues)  # not that shape after all: YAML reads it all


def split_records(text: str, filename: str, issues: list[Issue]) -> tuple[str, YMap, int] | None:
    """The records block read line by line, and the text with its lines blanked
    (for YAML to read the rest, line numbers unchanged); with the `records:` key's
    line. None when the file is not of that shape (YAML reads it all)."""
    found = _RECORDS.search(text)
    if found is None or _RECORDS.search(text, found.end()) is not None:
        return None
    start = found.end() + 1
    lines = text[start:].split("\n")
    key_line = text.count("\n", 0, found.start()) + 1
    records = LineRecords()
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
        if _BLANK.fullmatch(line):
            continue
        entry = _entry(line, filename, number, pending)
        if entry is None or (indent and entry[0] != indent):
            return None  # another shape or another indent: YAML reads and reports it
        indent, name_text, value = entry
        try:
            name = _name(name_text)
        except ValueError:
            return None
        column = len(indent) + 1
        if not records:
            records.start = (number, column)
        if name in records:
            pending.append(
                Issue(
                    Location(filename, number, column),
                    f"duplicate key {name!r} (first defined at line {records.key_loc(name).line})",
                )
            )
            continue
        records[name] = value
        if value.__class__ is not LineRecord:
            marks[name] = (number, column, number, column + len(name_text) + 2)
    if not records:
        return None
    issues.extend(pending)
    return text[:start] + "\n" * taken + "\n".join(lines[taken:]), records, key_line


def _entry(
    line: str, filename: str, number: int, issues: list[Issue]
) -> tuple[str, str, YMap | LineRecord] | None:
    """One record line: its indent, its name as written and its value; None when
    it is of no shape read here, or its mapping has a key twice (YAML says so)."""
    if (plain := _PLAIN.fullmatch(line)) is not None:
        try:
            value: YMap | LineRecord | None = LineRecord(
                filename, number, line, _word(plain.group(3)), plain_scalar(plain.group(4))
            )
        except ValueError:
            return None
        match = plain
    elif (fast := _FAST.fullmatch(line)) is not None:
        value, match = _fast_record(fast, filename, number), fast
    elif (one := _ONE_LINER.fullmatch(line)) is not None:
        value, match = _one_liner(one, filename, number, issues), one
    else:
        return None
    return None if value is None else (match.group(1), match.group(2), value)


def _word(text: str) -> Any:
    found = _WORDS.get(text)
    if found is None:
        found = plain_scalar(text)
        if len(_WORDS) < _MAX_WORDS:
            _WORDS[text] = found
    return found


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
            key = _word(key_text)
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
