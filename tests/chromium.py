"""Headless Chromium for the tests of the status page and the API's browser security."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import shutil
import tempfile
from typing import Any

import aiohttp


async def dump_dom(url: str) -> str:
    """The page as headless Chromium leaves it once its scripts have run."""
    profile = tempfile.mkdtemp(prefix="geodns-chromium-")
    try:
        browser = await asyncio.create_subprocess_exec(
            shutil.which("chromium") or "chromium",
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        dom, _ = await asyncio.wait_for(browser.communicate(), 60)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return dom.decode()


class Page:
    """A live page in headless Chromium, driven over the DevTools protocol (a
    WebSocket, through aiohttp): navigate, evaluate, screenshot. For what a
    one-shot --dump-dom cannot show: a page changing while it is open."""

    def __init__(self) -> None:
        self._browser: asyncio.subprocess.Process | None = None
        self._profile = ""
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Page:
        self._profile = tempfile.mkdtemp(prefix="geodns-chromium-")
        self._browser = await asyncio.create_subprocess_exec(
            shutil.which("chromium") or "chromium",
            *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
            *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
            f"--user-data-dir={self._profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._browser.stderr is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self._browser.stderr.readline()).decode()
                assert line, "chromium exited before its DevTools endpoint was up"
                if m := re.search(r"DevTools listening on ws://([^/]+)/", line):
                    endpoint = m.group(1)
                    break
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://{endpoint}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._browser is not None and self._browser.returncode is None:
            self._browser.kill()
            await self._browser.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        async with asyncio.timeout(30):
            while True:
                msg = await self._ws.receive_json()
                if msg.get("id") == ident:
                    assert "error" not in msg, msg
                    return dict(msg.get("result", {}))

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll a JavaScript expression until it is truthy; return its value."""
        async with asyncio.timeout(timeout):
            while not (value := await self.evaluate(expression)):  # noqa: ASYNC110 - polling the page
                await asyncio.sleep(0.1)
        return value

    async def screenshot(self) -> bytes:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])
