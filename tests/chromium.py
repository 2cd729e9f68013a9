"""Headless Chromium for the tests of the status page and the API's browser security."""

from __future__ import annotations

import asyncio
import shutil
import tempfile


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
