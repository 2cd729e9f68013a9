"""The API's bearer tokens, read from the environment or a private file: never
from the YAML (which often lives in a repository), never empty, never from a file
others may read. Read at start-up and again on every reload (rotation)."""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from pathlib import Path

from geodns.config.model import Config, ListenAddress
from geodns.errors import GeoDnsError

log = logging.getLogger(__name__)


def load_api_token(config: Config) -> str | None:
    """The bearer token for writes: GEODNS_API_TOKEN, else server.api_token_file.
    Never from the YAML itself, which often lives in a repository. An empty token
    or a token file others may read is an error, never a silent open door."""
    return _load_token("GEODNS_API_TOKEN", config.server.api_token_file, "server.api_token_file")


def load_read_token(config: Config) -> str | None:
    """The bearer token for reads (/v1/*, /metrics), when reads are not open:
    GEODNS_API_READ_TOKEN, else server.api_read_token_file. The write token reads too."""
    return _load_token(
        "GEODNS_API_READ_TOKEN", config.server.api_read_token_file, "server.api_read_token_file"
    )


def load_cluster_token(config: Config) -> str | None:
    """The secret peers share: GEODNS_CLUSTER_TOKEN, else cluster.token_file. Required
    when peers are set: health observations are not for anyone who can connect."""
    cluster = config.cluster
    if cluster is None:
        return None
    token = _load_token("GEODNS_CLUSTER_TOKEN", cluster.token_file, "cluster.token_file")
    if token is None and cluster.peers:
        raise GeoDnsError(
            "cluster.peers are set but there is no cluster token: set GEODNS_CLUSTER_TOKEN or"
            " cluster.token_file (the same secret on every instance, chmod 600)"
        )
    return token


def _load_token(variable: str, path: Path | None, key: str) -> str | None:
    token = os.environ.get(variable)
    if token is not None:
        if not token.strip():
            raise GeoDnsError(f"{variable} is set but empty: unset it, or give it a token")
        return token.strip()
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text().strip()
    except OSError as exc:
        raise GeoDnsError(f"cannot read {key} {path}: {exc}") from exc
    if mode & 0o077:
        raise GeoDnsError(
            f"{key} {path} may be read or written by others (mode {mode:04o}): chmod 600 {path}"
        )
    if not text:
        raise GeoDnsError(f"{key} {path} is empty")
    return text


def say_who_may_access(listen: ListenAddress, api_token: str | None, read_token: str | None) -> None:
    """At start, what the API's address and tokens let others do, loudly when it is too much."""
    beyond = not ipaddress.ip_address(listen.host).is_loopback
    if beyond and read_token is None and api_token is None:
        log.critical(
            "the API listens on %s with no read token: anyone who reaches it reads every member,"
            " reason and drain; set server.api_read_token_file",
            listen,
        )
    if api_token is not None:
        return
    if not beyond:
        log.warning(
            "API writes (drains) need no token: only clients on this host may make them;"
            " set server.api_token_file to require one"
        )
    else:
        log.critical(
            "the API listens on %s without a token: anyone who reaches it can read the status"
            " (writes stay loopback-only); set server.api_token_file",
            listen,
        )
