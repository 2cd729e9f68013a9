"""The `checks:` section: probe definitions and their options (pure)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    beside,
    int_in,
    mapping,
    one_of,
    to_bool,
    to_duration,
    to_port,
    to_str,
    type_name,
)
from geodns.config.model import CHECK_TYPES, Check, Matcher
from geodns.config.schemarec import accepts, schema_of
from geodns.config.yamlload import YMap
from geodns.errors import Location

HTTP_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
HTTP_KEYS = ("path", "method", "host", "headers", "expect_status", "expect_body", "tls_verify", "ca_file")
TYPE_KEYS = {"http": HTTP_KEYS, "https": HTTP_KEYS, "tcp": ("send", "expect"), "exec": ("command",)}


_STATUS = {
    "anyOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": r"^\s*[1-5][0-9]{2}\s*-\s*[1-5][0-9]{2}\s*$"},
    ]
}


@accepts({"anyOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1}]})
def expect_status(value: Any) -> tuple[tuple[int, int], ...]:
    """[200, "200-299", 301] -> ranges."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
            out.append((item, item))
            continue
        if isinstance(item, str):
            lo, sep, hi = item.partition("-")
            if sep and lo.strip().isdigit() and hi.strip().isdigit():
                a, b = int(lo), int(hi)
                if 100 <= a <= b <= 599:
                    out.append((a, b))
                    continue
        raise Invalid(f'bad status {item!r}: use codes 100-599 or ranges like "200-299"')
    if not out:
        raise Invalid("needs at least one status code")
    return tuple(out)


@accepts({"type": "string", "minLength": 1})
def matcher(value: Any) -> Matcher:
    """'OK' is a substring; '/^OK$/' a regular expression (searched, multi-line)."""
    text = to_str(value)
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        body = text[1:-1]
        try:
            return Matcher(body, re.compile(body, re.MULTILINE))
        except re.error as exc:
            raise Invalid(f"bad regular expression {text}: {exc}") from None
    return Matcher(text)


@accepts(
    {
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"},
        "additionalProperties": {"type": ["string", "integer"]},
    }
)
def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, YMap):
        raise Invalid(f"expected a mapping of header names to values, got {type_name(value)}")
    out = []
    for key, item in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", key):
            raise Invalid(f"bad header name {key!r}")
        if not isinstance(item, str | int) or isinstance(item, bool) or "\n" in str(item):
            raise Invalid(f"header {key!r} needs a one-line string value")
        out.append((key, str(item)))
    return tuple(out)


@accepts(
    {
        "anyOf": [
            {"type": "string", "pattern": "\\S"},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
        ]
    }
)
def _command(value: Any) -> tuple[str, ...]:
    """A list is run as is (argv); a string through /bin/sh -c."""
    if isinstance(value, str) and value.strip():
        return ("/bin/sh", "-c", value)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise Invalid(f"expected a command string or a non-empty list of arguments, got {type_name(value)}")


def _ca_file(base: Path) -> Any:
    def conv(value: Any) -> Path:
        path = beside(base, to_str(value))
        if not path.is_file():
            raise Invalid(f"CA file {str(path)!r} does not exist")
        return path

    return conv


def parse_checks(ctx: Ctx, raw: Any, where: Location, base: Path) -> dict[str, Check]:
    m = mapping(ctx, raw, where, "checks", allow_null=True)
    if m is None:
        return {}
    out: dict[str, Check] = {}
    for name, value in m.items():
        path = f"checks.{name}"
        body = mapping(ctx, value, m.value_loc(name), path)
        if body is None:
            continue
        check = _check(ctx, body, str(name), path, base)
        if check is not None:
            out[str(name)] = check
    return out


def _check(ctx: Ctx, body: YMap, name: str, path: str, base: Path) -> Check | None:
    f = Fields(ctx, body, path)
    d = Check(name=name, type="http")
    ctype = f.get("type", one_of(CHECK_TYPES), required=True)
    port = f.get("port", to_port)
    values: dict[str, Any] = {
        "path": f.get("path", to_str, d.path),
        "method": f.get("method", one_of(HTTP_METHODS), d.method),
        "host": f.get("host", to_str),
        "headers": f.get("headers", _headers, d.headers),
        "expect_status": f.get("expect_status", expect_status, d.expect_status),
        "expect_body": f.get("expect_body", matcher),
        "tls_verify": f.get("tls_verify", to_bool, d.tls_verify),
        "ca_file": f.get("ca_file", _ca_file(base)),
        "send": f.get("send", to_str),
        "expect": f.get("expect", matcher),
        "command": f.get("command", _command, d.command),
    }
    interval = f.get("interval", to_duration, d.interval)
    timeout = f.get("timeout", to_duration, d.timeout)
    jitter = f.get("jitter", _jitter)
    rise = f.get("rise", int_in(1, 100), d.rise)
    fall = f.get("fall", int_in(1, 100), d.fall)
    f.finish()
    if ctype is None:
        return d  # reported; known by name, so pools naming it get no second, misleading error
    for key in body:
        owner = next((t for t, keys in TYPE_KEYS.items() if key in keys), None)
        if owner is not None and key not in TYPE_KEYS[ctype]:
            f.error(
                str(key),
                f"only applies to {'/'.join(t for t, k in TYPE_KEYS.items() if key in k)} "
                f"checks, not {ctype}",
            )
    if interval is not None and timeout is not None and timeout >= interval:
        f.error("timeout", f"timeout ({timeout:g}s) must be shorter than interval ({interval:g}s)")
    if interval is not None and jitter is not None and jitter >= interval:
        f.error("jitter", f"jitter ({jitter:g}s) must be shorter than interval ({interval:g}s)")
    if ctype == "tcp" and port is None:
        ctx.error(body.loc, f"{path}: a tcp check needs a 'port'")
    if ctype == "exec" and "command" not in body:
        ctx.error(body.loc, f"{path}: an exec check needs a 'command'")
    if values["path"] is not None and not values["path"].startswith("/"):
        f.error("path", f"must start with '/', got {values['path']!r}")
    if values["ca_file"] is not None and values["tls_verify"] is False:
        f.error("ca_file", "has no effect with tls_verify: false")
    # A check with bad values is still returned (with defaults in their place), so that
    # pools naming it do not report a second, misleading "unknown check" error.
    return Check(
        name=name,
        type=ctype,
        port=port,
        jitter=jitter,
        interval=interval or d.interval,
        timeout=timeout or d.timeout,
        rise=rise or d.rise,
        fall=fall or d.fall,
        **{k: v for k, v in values.items() if v is not None},
    )


@accepts({"anyOf": [{"enum": ["0", "0s", 0]}, schema_of(to_duration)]})
def _jitter(value: Any) -> float:
    if value in ("0", "0s", 0):
        return 0.0
    return to_duration(value)
