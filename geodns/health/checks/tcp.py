"""TCP checks: connect, optionally send a line and expect a banner."""

from __future__ import annotations

import asyncio
import contextlib

from geodns.config.model import Check
from geodns.health.checks.base import OK, ProbeResult, Target, excerpt, failed, os_failure

MAX_BANNER = 4096


class TcpProbe:
    def __init__(self, check: Check) -> None:
        self.check = check

    async def probe(self, target: Target) -> ProbeResult:
        try:
            reader, writer = await asyncio.open_connection(target.address, target.port)
        except ConnectionRefusedError:
            return failed("refused", f"cannot connect to {target}: connection refused")
        except OSError as exc:
            return os_failure(exc, "connect", f"cannot connect to {target}")
        try:
            if self.check.send is not None:
                writer.write(self.check.send.encode())
                await writer.drain()
            if self.check.expect is None:
                return OK
            data = b""
            while len(data) < MAX_BANNER:
                chunk = await reader.read(MAX_BANNER - len(data))
                if not chunk:
                    break
                data += chunk
                if self.check.expect.matches(data.decode("utf-8", "replace")):
                    return OK
            return failed("banner", f"reply did not match {self.check.expect}: got {excerpt(data, 80)!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        return None
