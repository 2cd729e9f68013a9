"""Exit codes, as the README's command table states them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # something outside failed: a port in use, the daemon unreachable, the AWS API
EXIT_CONFIG = 2  # what the user gave is wrong: a config, a target, a token
EXIT_PENDING = 2  # geodns plan: changes pending (so any error of plan exits 1, as terraform's)
