"""Domain names as tuples of lowercase labels (pure).

A name is a tuple of labels, most specific first, without the empty root label:
("www", "example", "com"). Labels are str decoded as latin-1 so every wire byte
maps to exactly one character and back; lowercasing is ASCII-only, as DNS
comparison is (RFC 4343).
"""

from __future__ import annotations

Name = tuple[str, ...]

ROOT: Name = ()
MAX_LABEL = 63
MAX_NAME_WIRE = 255

_ASCII_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class NameSyntaxError(ValueError):
    """A name that is not a valid domain name, with a message for the user."""


def ascii_lower(label: str) -> str:
    return label.translate(_ASCII_UPPER)


def wire_length(name: Name) -> int:
    return sum(len(label) + 1 for label in name) + 1


def to_text(name: Name) -> str:
    """Presentation form with a trailing dot; unusual bytes escaped as \\DDD."""
    if not name:
        return "."
    return "".join(escape(label, '.\\"();@$ ') + "." for label in name)


def escape(text: str, specials: str) -> str:
    """Master-file escaping: `specials` get a backslash, non-printables become \\DDD."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in specials:
            out.append("\\" + ch)
        elif code < 0x20 or code >= 0x7F:
            out.append(f"\\{code:03d}")
        else:
            out.append(ch)
    return "".join(out)


def parse_name(text: str, origin: Name | None) -> Name:
    """Parse a name as written in config: absolute with a trailing dot, else relative.

    `@` is the origin. Relative names need an origin. Escapes are not accepted:
    no real zone in YAML needs a dot inside a label, and refusing them keeps
    the text and the wire form one-to-one.
    """
    if text == "@":
        if origin is None:
            raise NameSyntaxError("'@' can only be used inside a zone")
        return origin
    if text == ".":
        return ROOT
    if not text:
        raise NameSyntaxError("empty name")
    if "\\" in text:
        raise NameSyntaxError(f"escapes are not supported in names: {text!r}")
    absolute = text.endswith(".")
    body = text[:-1] if absolute else text
    labels = body.split(".")
    for label in labels:
        if not label:
            raise NameSyntaxError(f"empty label in {text!r}")
        if len(label.encode("utf-8")) > MAX_LABEL:
            raise NameSyntaxError(f"label longer than {MAX_LABEL} bytes in {text!r}")
        if not label.isascii():
            raise NameSyntaxError(f"non-ASCII name {text!r}: write IDNs as xn-- (punycode)")
        if any(ch.isspace() for ch in label):
            raise NameSyntaxError(f"whitespace in name {text!r}")
    name = tuple(ascii_lower(label) for label in labels)
    if not absolute:
        if origin is None:
            raise NameSyntaxError(f"name {text!r} must be absolute (end with a dot)")
        name = name + origin
    if wire_length(name) > MAX_NAME_WIRE:
        raise NameSyntaxError(f"name longer than {MAX_NAME_WIRE} bytes: {text!r}")
    return name


def is_subdomain(name: Name, parent: Name) -> bool:
    """True when `name` is `parent` or below it."""
    n = len(parent)
    return n == 0 or (len(name) >= n and name[-n:] == parent)
