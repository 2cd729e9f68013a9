"""What DNS answers read, built from a config and a health snapshot, and carried
from one snapshot to the next (shared by the single process and DNS workers)."""

from __future__ import annotations

import dataclasses
import logging

from geodns.config import Config
from geodns.dns.answer import PoolSource
from geodns.dns.fastcache import AnswerCache
from geodns.dns.handler import ServingState
from geodns.geoip.database import lookup_for
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.changes import changed_pools
from geodns.steering.geochoice import Geo
from geodns.steering.policy import AllMembers, PolicySource

log = logging.getLogger(__name__)


def serving_state(config: Config, snapshot: HealthSnapshot | None = None) -> ServingState:
    """A fresh state (empty answer cache): at start-up and on reload."""
    pools: PoolSource = AllMembers(config.pools) if snapshot is None else policy_source(config, snapshot)
    return ServingState(
        zones=config.zones,
        pools=pools,
        nsid=config.server.nsid,
        edns_udp_size=config.server.edns_udp_size,
        cache=AnswerCache(config.server.answer_cache_size),
    )


def next_state(config: Config, state: ServingState, snapshot: HealthSnapshot) -> ServingState:
    """The state for a new snapshot of the same config: the answer cache goes on,
    less the answers of pools whose decision changed."""
    pools = state.pools
    if not isinstance(pools, PolicySource) or pools.config is not config:
        return serving_state(config, snapshot)
    changed = changed_pools(config, pools.snapshot, snapshot)
    if changed:
        dropped = state.cache.invalidate(changed)
        log.debug(
            "snapshot %d: %s changed, %d cached answers dropped", snapshot.version, sorted(changed), dropped
        )
    # Same config: the same GeoIP reader (its per-network records) and geo choices.
    carried = PolicySource(config, snapshot, geo=pools.geo, choices=pools.choices)
    return dataclasses.replace(state, pools=carried)


def policy_source(config: Config, snapshot: HealthSnapshot) -> PolicySource:
    """Pool answers from this snapshot, geo pools looking clients up in the config's
    GeoIP databases (readers shared per process and file version)."""
    return PolicySource(config, snapshot, geo=geo_lookup(config))


def geo_lookup(config: Config) -> Geo | None:
    geoip = config.geoip
    return lookup_for(geoip.database, geoip.asn_database) if geoip is not None else None
