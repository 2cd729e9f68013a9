"""`python -m geodns.config.compile CONFIG`: load a configuration in a process of
its own, leaving its compiled zones in state_dir/zonecache, and say on stdout (one
JSON object) either the cache key of every zone or every problem found.

The daemon reloads through this: reading a 100,000-record zone's YAML takes
seconds of CPU, which in the daemon's own process competes with answering
queries (a thread does not help: the interpreter's lock hands over in slices of
tens to hundreds of milliseconds under such load). In a child it costs the
answer loop nothing; the daemon then reads the compiled zone from the cache in
steps between queries.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from geodns.config.parse import load
from geodns.errors import ConfigError


def command(path: Path) -> list[str]:
    """How the daemon runs this compiler on a config (reloads, and a first start's big zones)."""
    return [sys.executable, "-m", "geodns.config.compile", str(path)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(json.dumps({"issues": ["usage: python -m geodns.config.compile CONFIG"]}))
        return 2
    try:
        config = load(Path(argv[0]), use_cache=True)
    except ConfigError as exc:
        print(json.dumps({"issues": [str(issue) for issue in exc.issues]}))
        return 2
    keys = {key: list(origin) for key, origin in config.zone_keys.items()}
    print(json.dumps({"zone_keys": keys, "state_dir": str(config.server.state_dir)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
