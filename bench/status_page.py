"""The status page during an incident, as a real browser shows it.

Runs `geodns demo` (the shipped example with simulated backends) on spare ports,
drains ams with a reason, cuts par's backends, waits for the failover, and saves a
screenshot from headless Chromium (driven over the DevTools protocol) to the path
given (default docs/status-page.png). Prints what the page said, so the figure in
the README is from a real run, not a mock-up.

    python bench/status_page.py [--out docs/status-page.png]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.chromium import Page  # noqa: E402

HTTP = "127.0.0.1:8097"


def _save(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5).read()


async def main(out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    demo = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "geodns",
            "demo",
            "-c",
            str(REPO / "config" / "geodns.yaml"),
            "--dns-listen",
            "127.0.0.1:5397",
            "--http-listen",
            HTTP,
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with Page() as page:
            await asyncio.sleep(3)
            await page.goto(f"http://{HTTP}/")
            await page.wait_for("document.body.dataset.version")
            drain = [
                "drain",
                "dc=ams",
                "--reason",
                "switch replacement",
                "--for",
                "2h",
                "--api",
                f"http://{HTTP}",
            ]
            drained = await asyncio.create_subprocess_exec(sys.executable, "-m", "geodns", *drain, env=env)
            assert await drained.wait() == 0
            await asyncio.to_thread(_post, "http://127.0.0.11:8080/break?dc=par")
            shown = await page.wait_for(
                "(t => t.includes('nyc 2/5') && t)(document.getElementById('pools').innerText)", 30
            )
            await asyncio.sleep(2.5)  # one more refresh: the strips show the failures
            shot = await page.screenshot()
            await asyncio.to_thread(_save, out, shot)
            print(shown.strip().replace("\n", " | "))
            print(f"screenshot: {out} ({len(shot) // 1024} KiB)")
    finally:
        demo.terminate()
        await demo.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "status-page.png")
    asyncio.run(main(parser.parse_args().out))
