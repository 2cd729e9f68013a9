"""The `checks:` section: probe definitions and their options (pure)."""

from __future__ import annotations

from typing import Any

from geodns.config.fields import Ctx, Fields, Invalid, int_in, mapping, one_of, to_duration, to_port, to_str
from geodns.config.model import CHECK_TYPES, Check
from geodns.errors import Location


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


def parse_checks(ctx: Ctx, raw: Any, where: Location) -> dict[str, Check]:
    m = mapping(ctx, raw, where, "checks", allow_null=True)
    if m is None:
        return {}
    out: dict[str, Check] = {}
    for name, value in m.items():
        path = f"checks.{name}"
        body = mapping(ctx, value, m.value_loc(name), path)
        if body is None:
            continue
        f = Fields(ctx, body, path)
        d = Check(name=str(name), type="http")
        ctype = f.get("type", one_of(CHECK_TYPES), required=True)
        port = f.get("port", to_port)
        path_value = f.get("path", to_str, d.path)
        statuses = f.get("expect_status", expect_status, d.expect_status)
        body_match = f.get("expect_body", to_str)
        interval = f.get("interval", to_duration, d.interval)
        timeout = f.get("timeout", to_duration, d.timeout)
        rise = f.get("rise", int_in(1, 100), d.rise)
        fall = f.get("fall", int_in(1, 100), d.fall)
        f.finish()
        if interval is not None and timeout is not None and timeout >= interval:
            f.error("timeout", f"timeout ({timeout:g}s) must be shorter than interval ({interval:g}s)")
        if ctype == "tcp" and port is None:
            ctx.error(body.loc, f"{path}: a tcp check needs a 'port' (or check_port on each member)")
        if path_value is not None and not path_value.startswith("/"):
            f.error("path", f"must start with '/', got {path_value!r}")
        if ctype is None:
            continue
        out[str(name)] = Check(
            name=str(name),
            type=ctype,
            port=port,
            path=path_value or d.path,
            expect_status=statuses or d.expect_status,
            expect_body=body_match,
            interval=interval or d.interval,
            timeout=timeout or d.timeout,
            rise=rise or d.rise,
            fall=fall or d.fall,
        )
    return out
