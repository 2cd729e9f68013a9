"""Times as people and JSON read them: ISO 8601 in UTC."""

from __future__ import annotations

import datetime as dt


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
