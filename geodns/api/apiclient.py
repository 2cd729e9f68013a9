"""The CLI's side of the HTTP API (status, drain, undrain, explain): stdlib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from geodns.config.model import Config
from geodns.errors import GeoDnsError


class ApiError(GeoDnsError):
    """The daemon could not be reached, or refused the request (its message kept).

    Exit 2 when the daemon refused what we sent (4xx: a bad target, a token), 1 when
    it could not be reached or failed itself (5xx: e.g. a full disk refusing a drain)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def api_url(config: Config | None, override: str | None) -> str:
    if override:
        return override.rstrip("/")
    if config is None or config.server.http_listen is None:
        raise ApiError("no HTTP API address: pass --api http://HOST:PORT or set server.http_listen")
    return f"http://{config.server.http_listen}"


def call(
    base: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 - http(s) only
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise ApiError(f"{method} {path}: HTTP {exc.code}: {message}", 1 if exc.code >= 500 else 2) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(
            f"cannot reach geodns at {base}: {reason} (is it running? --api sets the address)", 1
        ) from None


def render_status(doc: dict[str, Any]) -> str:
    lines = [
        f"snapshot v{doc['version']}, {'ready' if doc['ready'] else 'NOT READY (waiting for first probes)'}"
    ]
    for o in doc.get("overrides", []):
        until = f" until {o['expires_at']}" if o.get("expires_at") else ""
        lines.append(f"override {o['target']}: forced {o['state']}{until}: {o['reason']}")
    r53 = doc.get("route53")
    if r53:
        if r53["ok"]:
            lines.append(f"route53: in sync (last success {r53['last_success']}; writer: {r53['writer']})")
        else:
            lines.append(
                f"route53: FAILING for {r53['failed_rounds']} round(s) (last success "
                f"{r53['last_success'] or 'never'}): {r53['last_error']}"
            )
    for pool in doc["pools"]:
        lines.append(f"pool {pool['name']} ({pool['policy']}, fallback {pool['fallback']}):")
        now = pool.get("now")
        if now and now["failing_open"]:
            lines.append(f"  FAILING OPEN since {now['fallback_since']}: {now['summary']}")
        elif now:
            lines.append(f"  {now['summary']}, since {now['since']}")
        for m in pool["members"]:
            state = m["state"].upper()
            if m["forced_by"]:
                state += f" (forced by {m['forced_by']['target']}; probes say {m['real_state']})"
            since = f" since {m['since']}" if m["since"] else ""
            reason = f"  {m['reason']}" if m["reason"] and m["real_state"] != "up" else ""
            lines.append(f"  {m['dc']:<8} {m['address']:<22} {state}{since}{reason}")
            votes = m.get("votes")
            if votes and (votes["down"] or votes["own"] != m["real_state"]):
                lines.append(f"  {'':<8} {'':<22} votes: {votes['summary']}")
    events = doc.get("events") or []
    if events:
        lines.append("recent changes (newest first):")
        for e in events[:10]:
            forced = " [forced]" if e["forced"] else ""
            why = f": {e['reason']}" if e["reason"] else ""
            lines.append(f"  {e['time']} {e['subject']}: {e['old']} -> {e['new']}{forced}{why}")
    return "\n".join(lines) + "\n"
