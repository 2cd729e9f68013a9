"""Compiled zones on disk, so a restart does not re-read YAML it has read before.

Reading a 100,000-record zone from YAML takes ~10 s (libyaml plus building the
located tree); a restart during an outage should not wait for that. After a
zone file loads cleanly, its built Zone is pickled under state_dir/zonecache,
keyed by a hash of everything it was built from: the file's bytes and mtime
(the default SOA serial), the pools it references, and the geodns version. A
key that matches means the same input was already validated, so the result is
the same; anything else is a miss and the YAML is read again.

The cache is as trusted as the rest of state_dir (pickle runs code when
loaded): keep state_dir writable by the geodns user only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

from geodns import __version__
from geodns.config.model import Pool
from geodns.zone.zone import Zone

log = logging.getLogger(__name__)

FORMAT = 1


def cache_key(data: bytes, mtime: int, pools: Mapping[str, Pool]) -> str:
    h = hashlib.sha256()
    h.update(f"{FORMAT}/{__version__}/{mtime}/".encode())
    h.update(repr(sorted(pools.items())).encode())
    h.update(data)
    return h.hexdigest()


def load(cache_dir: Path, key: str) -> Zone | None:
    path = cache_dir / f"{key}.zone"
    try:
        with path.open("rb") as f:
            zone = pickle.load(f)  # noqa: S301 - our own file in state_dir, see the module docstring
    except FileNotFoundError:
        return None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: read the YAML instead
        log.warning("ignoring unreadable zone cache %s: %s", path, exc)
        return None
    return zone if isinstance(zone, Zone) else None


def save(cache_dir: Path, key: str, zone: Zone, keep: set[str]) -> None:
    """Write atomically; drop entries no zone file maps to any more."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{key}.tmp"
        with tmp.open("wb") as f:
            pickle.dump(zone, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cache_dir / f"{key}.zone")
        for old in cache_dir.glob("*.zone"):
            if old.stem not in keep and old.stem != key:
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("cannot write zone cache in %s: %s", cache_dir, exc)
