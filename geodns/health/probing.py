"""One probe run so that nothing it does escapes as an exception, and every
target of a config probed once (the one-shot commands' states)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from geodns.config.model import Config
from geodns.health.checks import Probe, ProbeResult, Target, make_probe
from geodns.health.checks.base import failed
from geodns.health.health import Health, ProbeKey, probe_keys, step

log = logging.getLogger(__name__)


async def run_probe(probe: Probe, target: Target, limit: float) -> ProbeResult:
    """Run one probe within `limit` seconds; every way it can go wrong is a failure with a reason."""
    try:
        async with asyncio.timeout(limit):
            return await probe.probe(target)
    except TimeoutError:
        return failed("timeout", f"no answer within {limit:g}s")
    except Exception as exc:
        log.warning("probe of %s raised %s: %s", target, type(exc).__name__, exc, exc_info=True)
        return failed("error", f"check raised {type(exc).__name__}: {exc}")


async def probe_all_once(config: Config, *, wall: Callable[[], float] = time.time) -> dict[ProbeKey, Health]:
    """Every target probed once, concurrently: the states a one-shot command
    (`geodns plan`, `sync --once`) acts on. The first result decides, as at start-up."""
    probes: dict[str, Probe] = {}
    sem = asyncio.Semaphore(config.server.max_concurrent_probes)

    async def one(key: ProbeKey) -> tuple[ProbeKey, Health]:
        check = config.checks[key.check]
        probe = probes.setdefault(check.name, make_probe(check))
        async with sem:
            result = await run_probe(probe, Target(key.address, key.port), check.timeout)
        if not result.ok:
            log.info("%s: %s", key.address, result.reason)
        return key, step(Health(), result.ok, result.reason, wall(), rise=check.rise, fall=check.fall)

    try:
        return dict(await asyncio.gather(*(one(key) for key in probe_keys(config))))
    finally:
        for probe in probes.values():
            await probe.close()
