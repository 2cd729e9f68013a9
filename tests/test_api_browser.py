"""A hostile page in a real browser (headless Chromium) cannot drain a datacenter
or read the status through the operator's browser; DNS rebinding and cross-origin
writes are refused; every response carries the security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from geodns.config import load
from geodns.daemon import Daemon
from tests.chromium import dump_dom
from tests.configs import write_zone
from tests.conftest import needs, serving

ATTACK = """<!doctype html><html><body><pre id="out"></pre>
<form id="f" method="POST" action="API/v1/overrides" enctype="text/plain" target="sink">
<input name='{"target": "dc=par", "reason": "form", "x": "' value='"}'></form>
<iframe name="sink"></iframe>
<script>
const api = "API", out = document.getElementById("out");
const say = s => { out.textContent += s + ";"; };
(async () => {
  try {  // the write that used to work: a simple request, no preflight, response unread
    await fetch(api + "/v1/overrides", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify({target: "dc=par", reason: "no-cors"})});
    say("no-cors-sent");
  } catch (e) { say("no-cors-failed"); }
  try {
    const r = await fetch(api + "/v1/overrides", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({target: "dc=ams"})});
    say("json-post-status-" + r.status);
  } catch (e) { say("json-post-blocked"); }
  try { const r = await fetch(api + "/v1/status"); say("read-" + (await r.text()).slice(0, 12)); }
  catch (e) { say("read-blocked"); }
  document.getElementById("f").submit();
  say("form-sent");
})();
</script></body></html>"""


def _config(tmp: Path) -> Path:
    write_zone(tmp, "")
    (tmp / "geodns.yaml").write_text(
        'server: {dns_listen: ["127.0.0.1:0"], http_listen: "127.0.0.1:0", state_dir: state}\n'
        "datacenters: {par: {}, ams: {}}\n"
        "pools:\n  web: {members: [{address: 192.0.2.1, dc: par}, {address: 192.0.2.2, dc: ams}]}\n"
    )
    return tmp / "geodns.yaml"


@pytest_asyncio.fixture
async def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Daemon]:
    monkeypatch.delenv("GEODNS_API_TOKEN", raising=False)
    async with serving(_config(tmp_path)) as running:
        yield running


def _api(daemon: Daemon) -> str:
    assert daemon.admin is not None and daemon.admin.bound is not None
    return f"http://{daemon.admin.bound}"


@needs("chromium")
@pytest.mark.asyncio
async def test_a_hostile_page_cannot_drain_or_read(daemon: Daemon) -> None:
    page = ATTACK.replace("API", _api(daemon))

    async def hostile(_request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", hostile)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.2", 0)  # another origin than the API's
    await site.start()
    port = runner.addresses[0][1]
    try:
        text = await dump_dom(f"http://127.0.0.2:{port}/")
    finally:
        await runner.cleanup()
    assert "form-sent" in text, text  # the page ran to its end
    assert "json-post-blocked" in text and "read-blocked" in text, text
    assert daemon.overrides() == []  # nothing drained, by any of the four ways


@pytest.mark.asyncio
async def test_rebinding_cross_origin_and_simple_writes_are_refused(daemon: Daemon) -> None:
    api = _api(daemon)
    drain = {"target": "dc=par", "reason": "test"}
    async with aiohttp.ClientSession() as session:
        async with session.get(api + "/v1/status", headers={"Host": "evil.example:8053"}) as resp:
            assert resp.status == 421 and "unknown Host" in (await resp.json())["error"]
        async with session.post(
            api + "/v1/overrides", json=drain, headers={"Origin": "http://evil.example"}
        ) as resp:
            assert resp.status == 403 and "cross-origin write" in (await resp.json())["error"]
        async with session.post(api + "/v1/overrides", data='{"target": "dc=par"}') as resp:
            assert resp.status == 415
        async with session.post(api + "/v1/overrides", json=drain) as resp:
            assert resp.status == 201  # the CLI's way: JSON, from loopback, no Origin
        async with session.get(api + "/") as resp:
            assert resp.headers["Server"] == "geodns"
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert [o.target for o in daemon.overrides()] == ["dc=par"]


def test_the_status_page_has_no_inline_script_or_style() -> None:
    page = (Path(__file__).parent.parent / "geodns" / "api" / "statuspage" / "index.html").read_text()
    assert "<script>" not in page and "<style>" not in page and " style=" not in page


@needs("chromium")
@pytest.mark.asyncio
async def test_the_status_page_reads_with_a_token_in_its_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEODNS_API_TOKEN", raising=False)
    monkeypatch.setenv("GEODNS_API_READ_TOKEN", "reader")
    running = Daemon(load(_config(tmp_path)))
    await running.start()
    try:
        closed = await dump_dom(_api(running) + "/")
        assert "HTTP 401" in closed and "#token=" in closed
        opened = await dump_dom(_api(running) + "/#token=reader")
        assert "HTTP 401" not in opened and ">par <small>" in opened, opened
    finally:
        await running.stop()
