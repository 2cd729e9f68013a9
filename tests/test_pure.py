"""Table tests of the pure pieces: names, durations, YAML typing rules, the query parser."""

from __future__ import annotations

import dns.message
import pytest

from geodns.config.fields import Invalid, to_duration
from geodns.config.yamlload import load_text
from geodns.dns.wire import Malformed, parse_header, parse_query
from geodns.errors import Issue
from geodns.zone.names import NameSyntaxError, is_subdomain, parse_name, to_text


@pytest.mark.parametrize(
    ("text", "origin", "expected"),
    [
        ("www", ("example", "com"), ("www", "example", "com")),
        ("WWW.Example.COM.", None, ("www", "example", "com")),
        ("@", ("example", "com"), ("example", "com")),
        (".", None, ()),
        ("*.apps", ("example", "com"), ("*", "apps", "example", "com")),
    ],
)
def test_parse_name(text: str, origin: tuple[str, ...] | None, expected: tuple[str, ...]) -> None:
    assert parse_name(text, origin) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a..b.", "empty label"),
        ("a" * 64 + ".", "label longer than 63"),
        ("bad name.", "whitespace"),
        ("www", "must be absolute"),
        ("caf\u00e9.com.", "xn--"),
        ("a\\.b.", "escapes"),
        (".".join(["a" * 63] * 4) + ".", "longer than 255"),
    ],
)
def test_bad_names(text: str, message: str) -> None:
    with pytest.raises(NameSyntaxError, match=message):
        parse_name(text, None)


def test_to_text_escapes_and_subdomain() -> None:
    assert to_text(("a.b", "c")) == "a\\.b.c."
    assert to_text(()) == "."
    assert is_subdomain(("a", "example", "com"), ("example", "com"))
    assert not is_subdomain(("example", "org"), ("example", "com"))
    assert is_subdomain(("x",), ())


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("1m", 60.0), ("1h", 3600.0), ("1m30s", 90.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert to_duration(text) == seconds


@pytest.mark.parametrize("value", ["2", 2, "2 seconds", "1x", "", "0s", "s", "-1s", None])
def test_bad_durations(value: object) -> None:
    with pytest.raises(Invalid):
        to_duration(value)


def test_yaml_keeps_dns_values_as_written() -> None:
    issues: list[Issue] = []
    doc = load_text("a: no\nb: 1:30\nc: true\nd: 010\ne: 0x1F\nf: on\n", "t.yaml", issues)
    assert issues == []
    assert doc == {"a": "no", "b": "1:30", "c": True, "d": "010", "e": 31, "f": "on"}


def test_yaml_duplicate_keys_are_reported() -> None:
    issues: list[Issue] = []
    load_text("www: 1\nwww: 2\n", "z.yaml", issues)
    assert [str(i) for i in issues] == ["z.yaml:2:1: duplicate key 'www' (first defined at line 1)"]


def test_parse_query_reads_question_and_edns() -> None:
    wire = dns.message.make_query(
        "WwW.Example.com.", "AAAA", use_edns=0, payload=4096, want_dnssec=True
    ).to_wire()
    header = parse_header(wire)
    assert header is not None
    query = parse_query(wire, header)
    assert query.question.name == ("www", "example", "com")
    assert query.question.labels == (b"WwW", b"Example", b"com")
    assert query.question.qtype == 28
    assert query.edns is not None and query.edns.udp_size == 4096 and query.edns.do
    assert query.opt_count == 1


def test_parse_query_rejects_truncated_options() -> None:
    wire = dns.message.make_query("a.example.", "A", use_edns=0).to_wire()
    bad = wire[:-2] + b"\x00\x04" + b"\x00\x03\x00\x09"  # rdlength 4, option claims 9 bytes
    header = parse_header(bad)
    assert header is not None
    with pytest.raises(Malformed, match="EDNS option runs past"):
        parse_query(bad, header)
