"""The `cluster:` section: peers, votes, isolation and the governor (pure)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from geodns.config.fields import (
    Ctx,
    Fields,
    Invalid,
    beside,
    each_mapping,
    mapping,
    to_duration,
    to_fraction,
    to_str,
    unknown,
)
from geodns.config.model import QUORUMS, ClusterConfig, Peer
from geodns.config.schemarec import accepts
from geodns.config.yamlload import YList
from geodns.errors import Location

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_URL = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}/?")


@accepts({"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"})
def to_instance_name(value: Any) -> str:
    text = to_str(value)
    if not _NAME.fullmatch(text):
        raise Invalid(f"{text!r} is not an instance name (letters, digits, '.', '_', '-'; up to 63)")
    return text


@accepts({"type": "string", "pattern": "^https?://"})
def _url(value: Any) -> str:
    text = to_str(value)
    if not _URL.fullmatch(text):
        raise Invalid(f"{text!r} is not http(s)://HOST:PORT (the peer's API, e.g. http://10.0.1.5:8053)")
    return text.rstrip("/")


@accepts({"anyOf": [{"type": "integer", "minimum": 1}, {"enum": ["majority", "any", "all"]}]})
def _quorum(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise Invalid(f"a count of vantages must be at least 1, got {value}")
        return value
    text = to_str(value)
    if text not in QUORUMS:
        raise Invalid(f"expected majority, any, all or a count, got {text!r}")
    return text


def parse_cluster(
    ctx: Ctx, raw: Any, where: Location, base: Path, dcs: set[str], own: str | None = None
) -> ClusterConfig:
    m = mapping(ctx, raw, where, "cluster", allow_null=True)
    d = ClusterConfig()
    if m is None:
        return d
    f = Fields(ctx, m, "cluster")
    peers = _peers(ctx, f.raw("peers"), m.value_loc("peers") if "peers" in m else m.loc, dcs, own)
    token_file = f.get("token_file", to_str)
    ca_file = f.get("ca_file", to_str)
    interval = f.get("interval", to_duration, d.interval)
    timeout = f.get("timeout", to_duration, d.timeout)
    quorum = f.get("quorum", _quorum)
    isolation = f.get("isolation", to_fraction, d.isolation)
    max_down = f.get("max_down_fraction", to_fraction, d.max_down_fraction)
    window = f.get("down_window", to_duration, d.down_window)
    hold_max = f.get("hold_max", to_duration, d.hold_max)
    f.finish()
    if interval and timeout and timeout <= interval:
        f.error(
            "timeout", f"must be longer than cluster.interval ({interval:g}s): peers answer each interval"
        )
    return ClusterConfig(
        peers=peers,
        token_file=beside(base, token_file) if token_file else None,
        ca_file=beside(base, ca_file) if ca_file else None,
        interval=interval or d.interval,
        timeout=timeout or d.timeout,
        quorum=d.quorum if quorum is None else quorum,
        isolation=isolation or d.isolation,
        max_down_fraction=max_down or d.max_down_fraction,
        down_window=window or d.down_window,
        hold_max=hold_max or d.hold_max,
    )


def _peers(ctx: Ctx, raw: Any, where: Location, dcs: set[str], own: str | None) -> tuple[Peer, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, YList):
        ctx.error(where, "cluster.peers: expected a list of {name, url, datacenter}")
        return ()
    peers: list[Peer] = []
    names: set[str] = set()
    for _path, _m, f in each_mapping(ctx, raw, "cluster.peers"):
        name = f.get("name", to_instance_name, required=True)
        url = f.get("url", _url, required=True)
        dc = f.get("datacenter", to_str)
        f.finish()
        if dc is not None and dcs and dc not in dcs:
            f.error(
                "datacenter",
                unknown("datacenter", dc, dcs),
            )
        if name is not None and name in names:
            f.error("name", f"peer {name!r} is listed twice")
        elif name is not None and name == own:
            f.error("name", f"{name!r} is this instance's own name (server.name)")
        if name is not None and url is not None:
            names.add(name)
            peers.append(Peer(name, url, dc))
    return tuple(peers)
