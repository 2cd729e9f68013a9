"""The C extension `_netio` (built by `pip install`; why C: the header comment of
each of its files): batched UDP I/O (`_netio.c`), the answer cache's replay over a
UDP batch (`_replay.c`) and over a TCP connection's messages (`_tcpserve.c`).
Without it (no compiler at install time, a platform without recvmmsg) the socket
module serves and the answer loops replay in Python; the daemon says so at start.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from geodns.dns.fastcache import VARIANTS, PerSubnet, Rotating

log = logging.getLogger(__name__)

netio: Any  # the extension module, untyped (None when not built)
try:
    from geodns.dns import _netio  # type: ignore[attr-defined]
except ImportError as exc:  # not built: the socket module serves, and start-up says so
    netio = None
    UNAVAILABLE: str | None = str(exc)
else:
    UNAVAILABLE = None
    netio = _netio
    netio.configure(Rotating, PerSubnet, VARIANTS)  # the entries its replay understands

# Whether the listeners use the extension (UDP batches, the replays in C): whenever it was
# built. The tests switch it off to run the protocol suite over the socket module too.
enabled = netio is not None


@functools.cache  # once per process
def warn_if_unbuilt() -> None:
    """Say why answers go through the slower I/O, when they do for want of the build."""
    if UNAVAILABLE is not None:
        log.warning(
            "DNS answers go through socket calls, 3-6 us more CPU per cached answer: the C extension "
            "was not built (%s); reinstall with a C compiler (gcc) on Linux",
            UNAVAILABLE,
        )
