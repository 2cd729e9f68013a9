"""Nothing acknowledged is lost, nothing in a state file crashes start-up, and a
drain that cannot be read is said loudly until an operator acknowledges it.
Real files; a real full and a real read-only filesystem (tmpfs, as root)."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodns.config import load
from geodns.daemon import Daemon
from geodns.health import statefile
from geodns.health.health import Status
from geodns.steering.overridestore import load_overrides
from tests.configs import write_zone
from tests.conftest import needs

GOOD = {
    "target": "dc=par",
    "state": "down",
    "reason": "power work",
    "created": 1_800_000_000.0,
    "expires": None,
}


def _config(folder: Path, state: Path) -> Path:
    write_zone(folder, "  www: {type: A, pool: web}\n")
    (folder / "geodns.yaml").write_text(
        f'server: {{dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: "{state}"}}\n'
        "datacenters: {par: {}, ams: {}}\n"
        "pools:\n  web: {members: [{address: 192.0.2.1, dc: par}, {address: 192.0.2.2, dc: ams}]}\n"
    )
    return folder / "geodns.yaml"


async def _start(folder: Path, state: Path) -> Daemon:
    daemon = Daemon(load(_config(folder, state)))
    await daemon.start()
    return daemon


async def _api(daemon: Daemon, method: str, path: str, body: object = None) -> tuple[int, object]:
    assert daemon.admin is not None and daemon.admin.bound is not None
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://{daemon.admin.bound}{path}", json=body) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.asyncio
async def test_one_bad_entry_drops_only_itself_and_is_said_until_acknowledged(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    bad = GOOD | {"target": "dc=ams", "expires": "tomorrow"}
    (state / "overrides.json").write_text(json.dumps({"overrides": [GOOD, bad]}))
    daemon = await _start(tmp_path, state)
    try:
        assert [o.target for o in daemon.overrides()] == ["dc=par"]  # the good drain still applies
        ready, reasons = daemon.ready()
        assert not ready and any("entry 2 skipped: expires must be a Unix time" in r for r in reasons)
        assert "geodns_overrides_unreadable 1.0" in daemon.metrics().decode()
        status, body = await _api(daemon, "POST", "/v1/overrides/ack", {})
        assert status == 200 and len(body["acknowledged"]) == 1  # type: ignore[index]
        assert daemon.ready()[0] and "geodns_overrides_unreadable 0.0" in daemon.metrics().decode()
    finally:
        await daemon.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("content", ['{"overrides": [{"target": "dc=par", "sta', "[]", "directory"])
async def test_an_unreadable_file_is_kept_aside_and_never_overwritten(tmp_path: Path, content: str) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    saved = state / "overrides.json"
    if content == "directory":
        saved.mkdir()
    else:
        saved.write_text(content)
    daemon = await _start(tmp_path, state)
    try:
        aside = list(state.glob("overrides.json.corrupt-*"))
        assert len(aside) == 1
        if content != "directory":
            assert aside[0].read_text() == content  # the evidence, as it was
        assert any("drains may be missing" in r for r in daemon.ready()[1])
        # The next drain writes a new file; the one kept aside stays as it is.
        status, _ = await _api(daemon, "POST", "/v1/overrides", {"target": "dc=ams", "reason": "test"})
        assert status == 201 and daemon.ready()[0]  # acting on drains acknowledges
        assert [p.name for p in state.glob("overrides.json.corrupt-*")] == [aside[0].name]
        assert json.loads(saved.read_text())["overrides"][0]["target"] == "dc=ams"
    finally:
        await daemon.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("since", ["1e20", "1e400", "NaN", "-Infinity", '"yesterday"', "true"])
async def test_a_bad_number_in_health_json_cannot_stop_start_up(tmp_path: Path, since: str) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    good = '{"check": "web", "address": "192.0.2.9", "port": 80, "status": "down", "since": 1800000000}'
    bad = f'{{"check": "web", "address": "192.0.2.1", "port": 80, "status": "down", "since": {since}}}'
    (state / "health.json").write_text(f'{{"version": 1, "targets": [{bad}, {good}]}}')
    loaded = statefile.load(state / "health.json")
    assert [k.address for k in loaded] == ["192.0.2.9"]
    daemon = await _start(tmp_path, state)  # DNS opens
    await daemon.stop()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    )
)
def test_state_loaders_take_any_json_without_raising(tmp_path: Path, value: object) -> None:
    for doc in (
        value,
        {"overrides": value},
        {"overrides": [value, GOOD]},
        {"targets": value},
        {"targets": [value]},
    ):
        text = json.dumps(doc)
        (tmp_path / "overrides.json").write_text(text)
        (tmp_path / "health.json").write_text(text)
        loaded = load_overrides(tmp_path / "overrides.json", 0.0, move_aside=False)
        assert all(math.isfinite(o.created) for o in loaded.overrides)
        for health in statefile.load(tmp_path / "health.json").values():
            assert health.status in (Status.UP, Status.DOWN, Status.UNKNOWN)


def _mount(options: str, where: Path) -> None:
    subprocess.run(["mount", "-o", options, str(where)], check=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tmpfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest_asyncio.fixture
async def on_tmpfs(tmp_path: Path, small_tmpfs: Path) -> AsyncIterator[tuple[Daemon, Path]]:
    daemon = await _start(tmp_path, small_tmpfs / "state")
    try:
        yield daemon, small_tmpfs
    finally:
        await daemon.stop()


@needs("mount", root=True)
@pytest.mark.asyncio
async def test_a_full_disk_refuses_the_drain_instead_of_pretending(on_tmpfs: tuple[Daemon, Path]) -> None:
    daemon, fs = on_tmpfs
    filler = fs / "filler"
    with filler.open("wb") as f, pytest.raises(OSError):
        f.write(b"x" * (1 << 20))  # the tmpfs is 256 KiB: fill it
    status, body = await _api(daemon, "POST", "/v1/overrides", {"target": "dc=par", "reason": "maintenance"})
    assert status == 503 and "nothing was changed" in body["error"]  # type: ignore[index]
    assert daemon.overrides() == [] and daemon.store.current().overrides == ()
    filler.unlink()
    status, _ = await _api(daemon, "POST", "/v1/overrides", {"target": "dc=par", "reason": "maintenance"})
    assert status == 201
    saved = json.loads((fs / "state" / "overrides.json").read_text())
    assert [o["target"] for o in saved["overrides"]] == ["dc=par"]


@needs("mount", root=True)
@pytest.mark.asyncio
async def test_a_read_only_disk_refuses_removal_too(on_tmpfs: tuple[Daemon, Path]) -> None:
    daemon, fs = on_tmpfs
    status, _ = await _api(daemon, "POST", "/v1/overrides", {"target": "dc=par", "reason": "maintenance"})
    assert status == 201
    _mount("remount,ro", fs)
    try:
        status, body = await _api(daemon, "DELETE", "/v1/overrides/dc=par")
        assert status == 503 and "Read-only file system" in body["error"]  # type: ignore[index]
        assert [o.target for o in daemon.overrides()] == ["dc=par"]  # still drained, as on disk
    finally:
        _mount("remount,rw", fs)
    assert (fs / "state" / "overrides.json").stat().st_size > 0
