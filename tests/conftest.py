from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from geodns.config import Config, load
from geodns.daemon import Daemon
from geodns.dns import native
from tests import dnsclient
from tests.dnsclient import Endpoint

pytest_plugins = ["tests.route53env"]

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def needs(*tools: str, root: bool = False) -> pytest.MarkDecorator:
    """Skip when an external tool is missing -- except in CI (GEODNS_REQUIRE_TOOLS=1),
    where .ci/run installs them and a skip would hide a broken install step."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if root and os.geteuid() != 0:
        missing.append("root")
    required = os.environ.get("GEODNS_REQUIRE_TOOLS") == "1"
    return pytest.mark.skipif(bool(missing) and not required, reason=f"needs {', '.join(missing)}")


def copy_test_config(tmp_path: Path) -> Path:
    """The test configuration copied under tmp_path, with a state_dir of its own."""
    shutil.copytree(DATA, tmp_path / "cfg")
    main = tmp_path / "cfg" / "geodns.yaml"
    text = main.read_text()
    main.write_text(
        text.replace("  tcp_max_connections: 64\n", "  tcp_max_connections: 64\n  state_dir: state\n")
    )
    return main


@contextlib.asynccontextmanager
async def serving(config_path: Path) -> AsyncIterator[Daemon]:
    """A daemon started in this process on `config_path`, stopped afterwards."""
    daemon = Daemon(load(config_path))
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@dataclass
class Running:
    daemon: Daemon
    v4: Endpoint
    v6: Endpoint
    http: Endpoint


@pytest.fixture(scope="session")
def test_config() -> Config:
    return load(DATA / "geodns.yaml")


async def start_daemon(config: Config) -> Running:
    daemon = Daemon(config)
    await daemon.start()
    v4 = next(a for a in daemon.dns_bound() if not a.family_v6)
    v6 = next(a for a in daemon.dns_bound() if a.family_v6)
    assert daemon.admin is not None and daemon.admin.bound is not None
    http = daemon.admin.bound
    return Running(
        daemon, Endpoint(v4.host, v4.port), Endpoint(v6.host, v6.port), Endpoint(http.host, http.port)
    )


@pytest_asyncio.fixture(params=["full-path", "cached", "socket-io"])
async def server(test_config: Config, request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    """Every protocol test runs three times: answered by the full path, then with each
    query sent twice so that the reply checked is the one replayed from the cache,
    then both again over the socket module and the Python replay (what serves where
    the C extension was not built) instead of recvmmsg/sendmmsg and the C replays."""
    if request.param == "socket-io":
        request.getfixturevalue("monkeypatch").setattr(native, "enabled", False)
    running = await start_daemon(test_config)
    warm_before = dnsclient.warm_queries
    if request.param in ("cached", "socket-io"):
        running.v4 = Endpoint(running.v4.host, running.v4.port, warm=True)
        running.v6 = Endpoint(running.v6.host, running.v6.port, warm=True)
    try:
        yield running
    finally:
        await running.daemon.stop()
        # The handler must never have hit an internal error during a test.
        assert running.daemon.stats.internal_errors == 0
        if dnsclient.warm_queries > warm_before:
            assert running.daemon.stats.cache_hits > 0, "warmed queries never hit the cache"
