"""Tokens done right: rotation on reload, a case-insensitive scheme, no empty or
world-readable token, a wrong token told apart from a missing one."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from geodns.api.tokens import load_api_token, say_who_may_access
from geodns.config import load
from geodns.config.model import ListenAddress
from geodns.daemon import Daemon
from geodns.errors import GeoDnsError
from tests.configs import write_zone
from tests.conftest import serving


def _config(tmp_path: Path) -> Path:
    write_zone(tmp_path, "")
    token = tmp_path / "token"
    token.write_text("first-token\n")
    token.chmod(0o600)
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state,'
        " api_token_file: token}\n"
        "datacenters: {par: {}}\n"
        "pools:\n  web: {members: [{address: 192.0.2.1, dc: par}]}\n"
    )
    return tmp_path / "geodns.yaml"


@pytest_asyncio.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.delenv("GEODNS_API_TOKEN", raising=False)
    async with serving(_config(tmp_path)) as running:
        yield running


async def _drain(daemon: Daemon, authorization: str | None) -> tuple[int, str]:
    assert daemon.admin is not None and daemon.admin.bound is not None
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://{daemon.admin.bound}/v1/overrides", json={"target": "dc=par"}, headers=headers
        ) as resp,
    ):
        body = await resp.json()
        if resp.status == 201:
            daemon.remove_override("dc=par")
        return resp.status, str(body.get("error", ""))


@pytest.mark.asyncio
async def test_scheme_is_case_insensitive_and_a_wrong_token_is_told_apart(daemon: Daemon) -> None:
    assert await _drain(daemon, "Bearer first-token") == (201, "")
    assert await _drain(daemon, "bearer first-token") == (201, "")
    assert await _drain(daemon, "BEARER   first-token ") == (201, "")
    assert await _drain(daemon, None) == (401, "a bearer token is required (Authorization: Bearer ...)")
    assert await _drain(daemon, "Basic Zmlyc3Q=") == (
        401,
        "a bearer token is required (Authorization: Bearer ...)",
    )
    assert await _drain(daemon, "Bearer second-token") == (401, "token rejected")


@pytest.mark.asyncio
async def test_a_rotated_token_takes_effect_on_reload(daemon: Daemon) -> None:
    token = daemon.config.source.parent / "token"
    token.write_text("second-token\n")
    assert await daemon.reload()
    assert await _drain(daemon, "Bearer first-token") == (401, "token rejected")
    assert await _drain(daemon, "Bearer second-token") == (201, "")
    # A token file that goes bad fails the reload: the running token stays.
    token.chmod(0o644)
    assert not await daemon.reload()
    assert await _drain(daemon, "Bearer second-token") == (201, "")


def test_empty_or_exposed_tokens_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(_config(tmp_path))
    monkeypatch.setenv("GEODNS_API_TOKEN", "   ")
    with pytest.raises(GeoDnsError, match="GEODNS_API_TOKEN is set but empty"):
        load_api_token(config)
    monkeypatch.delenv("GEODNS_API_TOKEN")
    assert load_api_token(config) == "first-token"
    token = tmp_path / "token"
    token.chmod(0o640)
    with pytest.raises(GeoDnsError, match=r"may be read or written by others \(mode 0640\): chmod 600"):
        load_api_token(config)
    token.chmod(0o600)
    token.write_text(" \n")
    with pytest.raises(GeoDnsError, match="is empty"):
        load_api_token(config)
    assert os.environ.get("GEODNS_API_TOKEN") is None


@pytest.mark.asyncio
async def test_a_read_token_closes_the_documents_not_the_probes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEODNS_API_TOKEN", raising=False)
    monkeypatch.setenv("GEODNS_API_READ_TOKEN", "reader")
    path = _config(tmp_path)
    daemon = Daemon(load(path))
    await daemon.start()
    assert daemon.admin is not None and daemon.admin.bound is not None
    base = f"http://{daemon.admin.bound}"
    try:
        async with aiohttp.ClientSession() as session:
            for doc in ("/v1/status", "/metrics", "/v1/overrides"):
                async with session.get(base + doc) as resp:
                    assert resp.status == 401, doc
                for token in ("reader", "first-token"):  # the write token reads too
                    async with session.get(base + doc, headers={"Authorization": f"Bearer {token}"}) as resp:
                        assert resp.status == 200, (doc, token)
                async with session.get(base + doc, headers={"Authorization": "Bearer nope"}) as resp:
                    assert resp.status == 401
            for open_path in ("/", "/healthz", "/readyz", "/static/status.js"):
                async with session.get(base + open_path) as resp:
                    assert resp.status == 200, open_path
    finally:
        await daemon.stop()


@pytest.mark.parametrize(
    ("host", "api", "read", "critical", "warning"),
    [
        ("127.0.0.1", None, None, [], ["only clients on this host may make them"]),
        ("127.0.0.1", "w", None, [], []),
        ("0.0.0.0", None, None, ["with no read token", "without a token"], []),
        ("0.0.0.0", "w", None, [], []),  # the write token guards reads too
        ("0.0.0.0", "w", "r", [], []),
    ],
)
def test_start_up_says_who_may_read_and_write_the_api(
    caplog: pytest.LogCaptureFixture,
    host: str,
    api: str | None,
    read: str | None,
    critical: list[str],
    warning: list[str],
) -> None:
    caplog.set_level(logging.WARNING, logger="geodns")
    say_who_may_access(ListenAddress(host, 8053), api, read)
    said = {
        level: [r.getMessage() for r in caplog.records if r.levelname == level]
        for level in ("CRITICAL", "WARNING")
    }
    assert len(said["CRITICAL"]) == len(critical) and len(said["WARNING"]) == len(warning), said
    for words, lines in ((critical, said["CRITICAL"]), (warning, said["WARNING"])):
        assert all(w in line for w, line in zip(words, lines, strict=True)), said
