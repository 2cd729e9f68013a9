"""The status page in a real headless Chromium, driven over the DevTools protocol:
it renders the story (where each pool answers from, tiles, drains with who and
why, the timeline, probe strips), changes on a state change without a reload, and
shows a hostile backend's body as text, never as markup."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from geodns.daemon import Daemon
from tests.backends import HttpBackend, backends_on
from tests.chromium import Page
from tests.configs import write_zone
from tests.conftest import needs, serving

# What a compromised or broken backend might put in its body: markup that would run
# if the page ever inserted it as HTML.
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"><b id=injected>ERROR</b>"


def _config(tmp_path: Path, port: int) -> Path:
    write_zone(tmp_path, "  www: {type: A, pool: web}\n")
    (tmp_path / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state, workers: 1}\n'
        "datacenters: {par: {}, ams: {}}\n"
        f"checks: {{web: {{type: http, port: {port}, path: /, expect_body: OK, interval: 200ms,"
        " timeout: 150ms, rise: 1, fall: 1, jitter: 0s}}\n"
        "pools:\n  web: {check: web, datacenters: [par, ams],"
        " members: [{address: 127.0.0.81, dc: par}, {address: 127.0.0.82, dc: ams}]}\n"
    )
    return tmp_path / "geodns.yaml"


@pytest_asyncio.fixture
async def backends() -> AsyncIterator[dict[str, HttpBackend]]:
    async with backends_on("127.0.0.81", "127.0.0.82") as found:
        yield {"par": found["127.0.0.81"], "ams": found["127.0.0.82"]}


def _url(daemon: Daemon) -> str:
    assert daemon.admin is not None and daemon.admin.bound is not None
    return f"http://{daemon.admin.bound}/"


@needs("chromium")
@pytest.mark.asyncio
async def test_the_page_tells_the_story_and_follows_a_failure_live(
    tmp_path: Path, backends: dict[str, HttpBackend]
) -> None:
    async with serving(_config(tmp_path, backends["par"].port)) as daemon, Page() as page:
        await page.goto(_url(daemon))
        pools = await page.wait_for(
            "document.querySelector('#pools table') && #pools.innerText".replace(
                "#pools.innerText", "document.getElementById('pools').innerText"
            )
        )
        assert "web" in pools and "failover" in pools and "par 2/2 members up" in pools
        tiles = await page.evaluate("document.getElementById('tiles').innerText")
        assert "par" in tiles and "127.0.0.81" in tiles and "UP" in tiles.upper()
        assert await page.evaluate("document.querySelectorAll('.strip i.s-ok').length") >= 2

        drain = daemon.add_override("dc=ams", "down", "power work <b>tonight</b>", 3600, "ops@host")
        assert drain.target == "dc=ams"
        shown = await page.wait_for(
            "(t => t.includes('dc=ams') && t)(document.getElementById('overrides').innerText)"
        )
        assert "power work <b>tonight</b>" in shown and "by ops@host" in shown and "until 20" in shown
        version = int(await page.evaluate("document.body.dataset.version"))

        # par's backend starts answering 200 with a hostile body: down, said live.
        backends["par"].behaviour.body = HOSTILE
        banner = await page.wait_for(
            "(t => t.includes('FAILING OPEN') && t)(document.getElementById('banner').innerText)"
        )
        assert "pool web is FAILING OPEN" in banner and "all 2 members down" in banner
        assert int(await page.evaluate("document.body.dataset.version")) > version  # no reload needed
        timeline = await page.evaluate("document.getElementById('timeline').innerText")
        assert "member 127.0.0.81" in timeline and "down" in timeline and "pool web" in timeline

        # The body is shown as text, and nothing of it became markup or ran.
        tiles = await page.evaluate("document.getElementById('tiles').innerText")
        assert "onerror=" in tiles and "<b id=injected>" in tiles
        assert await page.evaluate("document.querySelectorAll('img, #injected, [onerror]').length") == 0
        assert await page.evaluate("document.title") == "geodns status"
        assert await page.evaluate("document.querySelectorAll('.strip i.s-bad').length") >= 1

        # Healed: the row's failure reason goes with the failure.
        backends["par"].behaviour.body = "OK"
        await page.wait_for("!document.getElementById('banner').innerText.includes('FAILING')")
        rows = json.loads(
            await page.evaluate(
                "JSON.stringify([...document.querySelectorAll('#tiles tr')].map(r => r.innerText))"
            )
        )
        par_rows = [r for r in rows if "127.0.0.81" in r]
        assert par_rows and "UP" in par_rows[0].upper()
        assert not any("did not match" in r for r in rows), rows
