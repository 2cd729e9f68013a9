"""Start-up helpers of the daemon's process: the CPUs it may use, the open-files
limit it claims, command-line listen addresses over the file's, its name among
peers, and the long-lived objects moved out of the collector's sight."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import resource
import socket
import subprocess
from pathlib import Path

from geodns.config import Config
from geodns.config.compile import command as compile_command
from geodns.config.model import ListenAddress
from geodns.config.zonesdir import Compiler
from geodns.errors import GeoDnsError
from geodns.health.capacity import fd_budget

log = logging.getLogger(__name__)

COMPILE_TIMEOUT = 3600.0  # seconds: a zone of 1 GiB (the most a file may have) with room to spare


def cpus() -> int:
    """The CPUs this process may run on (taskset and cpusets included)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def claim_fds(config: Config) -> int:
    """Raise the soft fd limit to the hard one (1,024 is a common soft default) and
    refuse a configuration that cannot fit: running out of fds would make every
    probe fail at once, which must never look like every backend dying."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, wanted, exc)
    budget = fd_budget(config)
    needed = sum(budget.values())
    if needed > soft:
        parts = ", ".join(f"{who} {n}" for who, n in budget.items())
        raise GeoDnsError(
            f"the configuration may need {needed} open files ({parts}) but this process may open {soft}: "
            "raise the limit (LimitNOFILE= in a systemd unit, ulimit -n in a shell) or lower "
            "server.max_concurrent_probes, server.tcp_max_connections or server.api_max_connections"
        )
    return soft


def with_overrides(
    config: Config, dns_listen: list[ListenAddress] | None, http_listen: ListenAddress | None
) -> Config:
    """Command-line listen addresses win over the file's (and survive reloads)."""
    server = config.server
    if dns_listen:
        server = dataclasses.replace(server, dns_listen=tuple(dns_listen))
    if http_listen is not None:
        server = dataclasses.replace(server, http_listen=http_listen)
    return dataclasses.replace(config, server=server)


def instance_name(config: Config) -> str:
    """server.name, else the host name (as peers list this instance)."""
    return config.server.name or socket.gethostname().split(".")[0]


def freeze_long_lived() -> None:
    """Move config, zones and other start-up objects out of the cyclic GC's sight.

    A full collection walks every tracked object; with large zones and thousands
    of probes churning short-lived objects, those walks stalled DNS answers for
    tens of milliseconds (bench/probe_capacity.py, 2,000 probes/s: p99 63 ms
    before, ~5 ms after). Frozen objects are still freed by reference counting
    when a reload drops them. No collection first: at start-up nothing came
    before to reclaim, and one pass over a million-record zone took 0.7 s."""
    gc.freeze()


def zone_compiler(path: Path) -> Compiler:
    """For the start-up load: a big zone not yet compiled is compiled by a child
    (`geodns.config.compile`, as reloads are), once, and then read from the cache
    like a restart. Reading a million records here left the process at ~800 MB
    for good (the parse's garbage is freed but stays with the process); read from
    the cache, ~500 MB. False when the child failed: this process reads the YAML
    itself and says what is wrong."""
    outcome: list[bool] = []

    def compile_once() -> bool:
        if not outcome:
            log.info("compiling the big zone(s) of %s in a child process first", path)
            argv = compile_command(path)
            try:
                run = subprocess.run(
                    argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
                )
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("cannot run the zone compiler (%s); reading the zones in this process", exc)
                outcome.append(False)
            else:
                if run.returncode != 0:
                    said = (run.stdout + run.stderr).strip().splitlines()[-1:] or ["no output"]
                    log.warning(
                        "the zone compiler exited %d (%s); reading the zones in this process",
                        run.returncode,
                        said[0][:300],
                    )
                outcome.append(run.returncode == 0)
        return outcome[0]

    return compile_once
