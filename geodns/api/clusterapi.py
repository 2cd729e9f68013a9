"""The cluster's HTTP endpoints: a peer's long-poll for this instance's report
(the shared cluster token, never the API tokens), and /v1/cluster for people."""

from __future__ import annotations

import hmac
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from geodns.cluster.report import encode_unchanged

if TYPE_CHECKING:
    from geodns.cluster.node import ClusterNode

MAX_WAIT = 10.0  # seconds a long-poll may be held


def _token_ok(request: web.Request, token: str | None) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    if token is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def observations(request: web.Request, node: ClusterNode | None, token: str | None) -> web.Response:
    if node is None:
        return web.json_response({"error": "this instance has no cluster section"}, status=404)
    if not _token_ok(request, token):
        return web.json_response({"error": "the cluster token is required"}, status=401)
    q = request.query
    try:
        seq = int(q.get("seq", "-1"))
        wait = float(q.get("wait", "0"))
    except ValueError:
        return web.json_response({"error": "seq and wait must be numbers"}, status=400)
    wait = min(max(wait, 0.0), MAX_WAIT) if math.isfinite(wait) else 0.0
    boot = q.get("boot")
    if boot == node.boot:
        await node.wait_change(seq, wait)
        if node.seq == seq:
            return web.Response(body=encode_unchanged(node.report), content_type="application/json")
    return web.Response(body=node.encoded(), content_type="application/json")


def cluster_document(node: ClusterNode) -> dict[str, Any]:
    now = node.clock()
    hold = node.governor.hold
    return {
        "name": node.name,
        "datacenter": node.datacenter,
        "config_hash": node.hash,
        "partitioned": node.partitioned,
        "isolated": sorted(node.verdict.isolated) if node.verdict else [],
        "peers": [
            {
                "name": state.peer.name,
                "url": state.peer.url,
                "datacenter": state.peer.datacenter,
                "counted": state.counted(now, node.settings.timeout),
                "last_heard_seconds_ago": None if state.heard is None else round(now - state.heard, 3),
                "problem": state.problem,
                "config_hash": state.report.config_hash if state.report else None,
                "same_config": state.report.config_hash == node.hash if state.report else None,
            }
            for state in node.peers.values()
        ],
        "governor": None
        if hold is None
        else {
            "holding": sorted(f"{k.address}:{k.port}" for k in hold.held),
            "since_seconds": round(now - hold.since, 1),
        },
    }
