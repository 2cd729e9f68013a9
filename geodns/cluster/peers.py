"""Pulling every peer's report over its HTTP API (long-poll).

Each request says which report we hold (boot, seq); the peer answers at once
when it has a newer one, else after `cluster.interval` with a short "unchanged"
(proof of life). A change crosses the cluster in one round trip, and a peer
that stops answering stops counting after `cluster.timeout`. Whatever a peer
sends back is checked before use; anything wrong (status, JSON, types, size,
slowness, a different name) leaves that peer uncounted with the reason logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

import aiohttp

from geodns.cluster.node import ClusterNode, PeerState
from geodns.cluster.report import MAX_REPORT, Report, ReportError, decode

log = logging.getLogger(__name__)

OBSERVATIONS = "/v1/cluster/observations"
RETRY = 0.5  # seconds between attempts at a peer that failed


def _ssl(ca_file: Path | None) -> ssl.SSLContext | bool:
    if ca_file is None:
        return True  # the system's CAs, verified
    return ssl.create_default_context(cafile=str(ca_file))


async def pull_all(node: ClusterNode, token: str) -> None:
    """Runs until cancelled: one long-poll loop per peer."""
    settings = node.settings
    connector = aiohttp.TCPConnector(ssl=_ssl(settings.ca_file), limit=0)
    async with aiohttp.ClientSession(
        connector=connector, headers={"Authorization": f"Bearer {token}"}
    ) as session:
        await asyncio.gather(*(_pull(node, session, name) for name in list(node.peers)))


async def _pull(node: ClusterNode, session: aiohttp.ClientSession, name: str) -> None:
    while name in node.peers:
        state = node.peers[name]
        try:
            report = await _ask(node, session, state)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, ReportError, OSError, UnicodeError) as exc:
            node.failed(name, f"not counted: {type(exc).__name__}: {exc}".rstrip(": "))
            await asyncio.sleep(RETRY)
            continue
        except Exception as exc:  # a bug of ours must not end the pulling
            log.exception("cluster: pulling from peer %s failed", name)
            node.failed(name, f"not counted: internal error {exc!r}")
            await asyncio.sleep(RETRY)
            continue
        node.heard(name, report)


async def _ask(node: ClusterNode, session: aiohttp.ClientSession, state: PeerState) -> Report:
    settings = node.settings
    params = {"wait": f"{settings.interval:g}"}
    if state.report is not None:
        params |= {"boot": state.report.boot, "seq": str(state.report.seq)}
    timeout = aiohttp.ClientTimeout(total=settings.interval + settings.timeout)
    async with session.get(state.peer.url + OBSERVATIONS, params=params, timeout=timeout) as response:
        if response.status != 200:
            raise ReportError(f"HTTP {response.status} from {state.peer.url}")
        body = await response.content.read(MAX_REPORT + 1)
    report = decode(body, state.report)
    if report.name != state.peer.name:
        raise ReportError(f"answers as {report.name!r}, not {state.peer.name!r}")
    return report
