"""The event loop every geodns process runs on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


def uvloop_run(main: Coroutine[Any, Any, None], *, use_uvloop: bool = True) -> None:
    """Run `main` on uvloop when installed (several times the UDP rate), else asyncio."""
    if use_uvloop:
        try:
            import uvloop  # noqa: PLC0415 - optional
        except ImportError:
            log.info("uvloop not installed; using the standard asyncio loop")
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
