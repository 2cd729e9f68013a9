"""The fast reader of record lines builds exactly what the YAML reader builds:
the same values, the same positions (line and column of every key and value),
the same problems, on generated zone files that mix plain lines with every
shape it must hand back to YAML. And the zone read from them is the same zone,
with the same problems, whether the plain-record shortcut reads it or not."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from geodns.config import schemarec
from geodns.config.fields import Ctx
from geodns.config.rdata import _IPV4
from geodns.config.recordlines import LineRecord, load_zone_text, split_records
from geodns.config.yamlload import YList, YMap, load_text
from geodns.config.zonefile import parse_zone
from geodns.errors import Issue

HEADER = "origin: example.test.\nsoa: {mname: ns1, rname: hostmaster}\n"
NAMES = ["www", "h1", "h-2", "a.b", "ns1", "Mail", "mail", "x.example.test.", "other.test.", "1", "true",
         "null", "1.5", '"@"', '"*.w"', "'q'", '"sp ace"', "_srv._tcp", "www"]  # fmt: skip
TYPES = ["A", "a", "AAAA", "CNAME", "NS", "MX", "TXT", "SOA", "BOGUS", "1"]
VALUES = ["192.0.2.1", "10.0.0.1", "010.0.0.1", "1.2.3", "2001:db8::1", "::1", "www", "mail.example.test.",
          "10", "-5", "-", "1.5", ".inf", "true", "null", "a:b", "foo:", "x.y.z", "+1", "0x1F", "1_000",
          "192.0.2.1.", "ns1.example.test"]  # fmt: skip
OTHER = [
    '  mx: {type: MX, value: "10 mail"}',
    "  list: {type: A, values: [192.0.2.7, 192.0.2.8]}",
    "  pooled: {type: A, pool: web}",
    "  ttl: {type: A, value: 192.0.2.9, ttl: 60}",
    "  dup: {type: A, type: AAAA}",
    "  odd: {type: A,value: 192.0.2.4}",
    "",
    "  # a comment",
    "# a comment at the margin",
    "  multi: {type: A,",
    "    value: 192.0.2.5}",
    "  anchored: &x {type: A, value: 192.0.2.6}",
    "  aliased: *x",
    "  commented: {type: A, value: 192.0.2.3}  # trailing",
    "\tTAB: {type: A, value: 192.0.2.2}",
    "    deeper: {type: A, value: 192.0.2.2}",
    "  block:",
    "    type: A",
    "  bad: {type: A, value: [}",
    "ttl: 300",
    "records:",
]


@st.composite
def plain_lines(draw: Any) -> str:
    name, rtype, value = (draw(st.sampled_from(c)) for c in (NAMES, TYPES, VALUES))
    return f"  {name}: {{type: {rtype}, value: {value}}}"


@st.composite
def zone_texts(draw: Any) -> str:
    lines: list[str] = draw(st.lists(st.one_of(plain_lines(), st.sampled_from(OTHER)), max_size=12))
    tail: str = draw(st.sampled_from(["", "ttl: 60\n", "---\n", "extra: [1, 2]\n"]))
    return HEADER + "records:\n" + "\n".join(lines) + "\n" + tail


def _tree(value: Any) -> Any:
    """Values with every position, for comparing two readings."""
    if isinstance(value, LineRecord):
        value = value.located()
    if isinstance(value, YMap):
        where = [(value.key_loc(k), value.value_loc(k)) for k in value]
        return (
            "map",
            value.start,
            [(k, w, _tree(v)) for (k, v), w in zip(value.items(), where, strict=True)],
        )
    if isinstance(value, YList):
        return ("list", value.start, value.item_marks, [_tree(v) for v in value])
    return (type(value).__name__, value)


def _said(issues: list[Issue]) -> list[str]:
    return [str(issue) for issue in issues]


@settings(max_examples=400, deadline=None)
@given(zone_texts())
def test_the_fast_reader_builds_what_yaml_builds(text: str) -> None:
    slow: list[Issue] = []
    fast: list[Issue] = []
    assert _tree(load_zone_text(text, "z.yaml", fast)) == _tree(load_text(text, "z.yaml", slow)), text
    assert _said(fast) == _said(slow), text


@settings(max_examples=300, deadline=None)
@given(zone_texts())
def test_the_plain_record_shortcut_reads_the_zone_the_general_reader_reads(text: str) -> None:
    def read(general: bool) -> tuple[Any, list[str]]:
        ctx = Ctx()
        doc = load_text(text, "z.yaml", ctx.issues)
        if general:
            with schemarec.recording():  # the shortcut stays out of a recording
                zone = parse_zone(ctx, doc, "z.yaml", {}, 1)
        else:
            zone = parse_zone(ctx, doc, "z.yaml", {}, 1)
        return (None if zone is None else (zone.origin, dict(zone.nodes))), _said(ctx.issues)

    assert read(False) == read(True), text


def test_a_plain_block_is_read_by_the_fast_reader() -> None:
    """The generated cases above would pass if the fast reader never ran: this one
    must take it (and a file of another shape must not)."""
    text = HEADER + "records:\n  www: {type: A, value: 192.0.2.1}\n  '@': {type: NS, value: ns1}\n"
    split = split_records(text, "z.yaml", [])
    assert split is not None and list(split[1]) == ["www", "@"]
    assert split_records(HEADER + "records:\n  www:\n    type: A\n", "z.yaml", []) is None


OCTETS = st.one_of(st.integers(0, 300).map(str), st.integers(0, 99).map(lambda n: f"0{n}"), st.just(""))


@settings(max_examples=2000, deadline=None)
@given(st.lists(OCTETS, min_size=1, max_size=6).map(".".join) | st.text(max_size=20))
def test_the_quick_ipv4_check_agrees_with_ipaddress(text: str) -> None:
    try:
        ipaddress.IPv4Address(text)
        valid = True
    except ValueError:
        valid = False
    assert bool(_IPV4.fullmatch(text)) == valid
