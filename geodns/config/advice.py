"""Valid configurations that will not do what their author likely expects (pure):
said by `geodns check` and at start-up as warnings, never refused."""

from __future__ import annotations

from geodns.config.model import Config


def advice(config: Config) -> list[str]:
    out = []
    for pool in config.pools.values():
        if pool.check is None:
            out.append(
                f"pool {pool.name} is never health-checked (no `check`): every member counts as up,"
                " so it will never fail over"
            )
    return out
