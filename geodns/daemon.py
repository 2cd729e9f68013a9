"""Wires config, zones and listeners together; SIGHUP reloads, SIGTERM stops."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import resource
import signal
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from geodns.api.admin import AdminServer, make_app
from geodns.api.metrics import Metrics
from geodns.api.status import status_document
from geodns.config import Config, load
from geodns.config.model import ListenAddress
from geodns.dns.answer import PoolSource
from geodns.dns.fastcache import AnswerCache
from geodns.dns.handler import ServingState, Stats
from geodns.dns.server import DnsServer
from geodns.errors import ConfigError, GeoDnsError
from geodns.health.monitor import Monitor
from geodns.health.overrides import Override
from geodns.health.snapshot import HealthSnapshot, SnapshotStore
from geodns.route53.client import Route53Client, Route53Error
from geodns.route53.sync import Reconciler, Route53Sync
from geodns.steering.explain import explain
from geodns.steering.overridestore import OverrideStore
from geodns.steering.policy import AllMembers, PolicySource

log = logging.getLogger(__name__)


def serving_state(config: Config, snapshot: HealthSnapshot | None = None) -> ServingState:
    pools: PoolSource = AllMembers(config.pools) if snapshot is None else PolicySource(config, snapshot)
    return ServingState(
        zones=config.zones,
        pools=pools,
        nsid=config.server.nsid,
        edns_udp_size=config.server.edns_udp_size,
        cache=AnswerCache(config.server.answer_cache_size),
    )


FD_RESERVE = 64  # listeners, the state files, logs, the event loop's own


def fd_budget(config: Config) -> dict[str, int]:
    """The file descriptors the configuration may hold at once, by user."""
    server = config.server
    return {
        "probes": server.max_concurrent_probes * 2,  # a socket, or an exec check's pipe pair
        "DNS over TCP": server.tcp_max_connections,
        "the HTTP API": server.api_max_connections if server.http_listen is not None else 0,
        "listeners and files": FD_RESERVE + 2 * len(server.dns_listen),
    }


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


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        dns_listen: list[ListenAddress] | None = None,
        http_listen: ListenAddress | None = None,
    ) -> None:
        self.dns_override = dns_listen
        self.http_override = http_listen
        self.config = with_overrides(config, dns_listen, http_listen)
        self.stats = Stats()
        self.metrics_registry = Metrics(self.stats)
        self.store = SnapshotStore()
        self.monitor = Monitor(self.config, self.store, self.metrics_registry)
        self.override_store = OverrideStore(self.config, self.store)
        self._stopping = threading.Event()  # wakes the Route53 thread out of its sleeps
        self.route53: Route53Sync | None = None
        if self.config.server.mode in ("route53", "both") and self.config.route53 is not None:
            self.route53 = Route53Sync(
                self.config, self.store, self._reconciler(self.config), self.monitor.known
            )
        self._api_token = load_api_token(self.config)
        self.state = serving_state(self.config, self.store.current())
        # Every new snapshot (and only that) swaps the answers' view of health.
        self.store.subscribe(lambda snapshot: self._swap(serving_state(self.config, snapshot)))
        self.dns = DnsServer(
            lambda: self.state,
            self.stats,
            tcp_idle_timeout=self.config.server.tcp_idle_timeout,
            tcp_max_connections=self.config.server.tcp_max_connections,
        )
        self.admin: AdminServer | None = None
        self.serving = False
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[bool] | None = None

    def _reconciler(self, config: Config) -> Reconciler:
        assert config.route53 is not None
        client = Route53Client(config.route53, self.metrics_registry, sleep=self._interruptible_sleep)
        return Reconciler(config, client, self.metrics_registry)

    def _interruptible_sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise Route53Error("stopping")

    def _swap(self, state: ServingState) -> None:
        self.state = state

    # AdminSource: what the HTTP API reads.
    def ready(self) -> tuple[bool, list[str]]:
        reasons = [f"waiting for {k.check} {k.address}:{k.port}" for k in self.monitor.pending()]
        reasons += self.monitor.checker_trouble()
        return not reasons, reasons

    def status(self) -> dict[str, Any]:
        ready, _ = self.ready()
        return status_document(self.config, self.store.current(), self.monitor.states, ready)

    def metrics(self) -> bytes:
        return self.metrics_registry.render()

    @property
    def api_token(self) -> str | None:
        return self._api_token

    def overrides(self) -> list[Override]:
        return list(self.override_store.overrides)

    def add_override(self, target: str, state: str, reason: str, duration: float | None) -> Override:
        return self.override_store.add(target, state, reason, duration)

    def remove_override(self, target: str) -> list[Override]:
        return self.override_store.remove(target)

    def explain(self, name: str, qtype: str, client: str, ecs: str | None) -> dict[str, Any]:
        return explain(self.config, self.store.current(), name, qtype, client, ecs)

    async def start(self) -> None:
        limit = claim_fds(self.config)
        log.debug("open-files limit %d, budget %d", limit, sum(fd_budget(self.config).values()))
        _freeze_long_lived()
        self.override_store.start()
        await self.monitor.start()
        await self._first_results()
        if self.config.server.mode != "route53":
            await self.dns.start(self.config.server.dns_listen)
        if self.route53 is not None:
            self.route53.start()
        if self.config.server.http_listen is not None:
            self.admin = AdminServer(make_app(self), max_connections=self.config.server.api_max_connections)
            await self.admin.start(self.config.server.http_listen)
        self.serving = True
        zones = ", ".join(sorted(".".join(o) + "." for o in self.config.zones.zones))
        log.info("serving %d zone(s): %s", len(self.config.zones.zones), zones or "none")

    async def _first_results(self) -> None:
        """Hold DNS back until every member has a state (probes start at once, so this
        takes one probe timeout at most): no answer is built from no information.
        Bounded: if probes cannot finish, serve with the pools' fallback and say so."""
        if self.monitor.all_known.is_set() or not self.monitor.targets:
            return
        limit = max(self.config.checks[k.check].timeout for k in self.monitor.targets) + 1.0
        known = asyncio.ensure_future(self.monitor.all_known.wait())
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({known, stop}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            known.cancel()
            stop.cancel()
        if not self.monitor.all_known.is_set():
            log.warning("not every member has a probe result after %.1fs; serving with pool fallbacks", limit)

    async def reload(self) -> bool:
        """Load the config again; on any problem keep serving the old one."""
        path = self.config.source
        log.info("reloading configuration from %s", path)
        try:
            # Parsing a large zone takes a while: do it off the loop so queries keep flowing.
            new = await asyncio.to_thread(load, path, use_cache=True)
        except ConfigError as exc:
            log.error(
                "reload failed, still serving the previous configuration; %d problem(s):\n%s",
                len(exc.issues),
                exc,
            )
            return False
        new = with_overrides(new, self.dns_override, self.http_override)
        if (
            new.server.dns_listen != self.config.server.dns_listen
            or new.server.http_listen != self.config.server.http_listen
        ):
            log.warning("listen addresses changed in %s; restart geodns to apply them", path)
        self.config = new
        self.state = serving_state(new, self.store.current())  # one swap: each query sees old or new
        self.override_store.update(new)
        if self.route53 is not None and new.route53 is not None:
            self.route53.settings = new.route53
            self.route53.reconciler = self._reconciler(new)
        await self.monitor.update(new)
        _freeze_long_lived()
        log.info("reloaded: serving %d zone(s)", len(new.zones.zones))
        return True

    def request_reload(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            log.info("reload already in progress; ignoring SIGHUP")
            return
        self._reloading = asyncio.get_running_loop().create_task(self.reload())

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self.start()
            await self._stop.wait()
            log.info("stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()

    async def stop(self) -> None:
        self.serving = False
        if self._reloading is not None:
            self._reloading.cancel()
        await self.monitor.stop()
        await self.dns.stop()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.admin.stop(), 1.0)


def load_api_token(config: Config) -> str | None:
    """The bearer token for writes: GEODNS_API_TOKEN, else server.api_token_file.
    Never from the YAML itself, which often lives in a repository."""
    token = os.environ.get("GEODNS_API_TOKEN")
    if token:
        return token.strip()
    path = config.server.api_token_file
    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise GeoDnsError(f"cannot read server.api_token_file {path}: {exc}") from exc
    if not text:
        raise GeoDnsError(f"server.api_token_file {path} is empty")
    return text


def _freeze_long_lived() -> None:
    """Move config, zones and other start-up objects out of the cyclic GC's sight.

    A full collection walks every tracked object; with large zones and thousands
    of probes churning short-lived objects, those walks stalled DNS answers for
    tens of milliseconds (bench/probe_capacity.py, 2,000 probes/s: p99 63 ms
    before, ~5 ms after). Frozen objects are still freed by reference counting
    when a reload drops them; unfreezing first lets one collection reclaim any
    cycles the previous generation of objects left behind."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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


def run(
    path: Path,
    dns_listen: list[ListenAddress] | None,
    http_listen: ListenAddress | None,
    *,
    use_uvloop: bool = True,
) -> None:
    """Load, serve until SIGTERM. Raises ConfigError before binding anything."""
    config = load(path, use_cache=True)
    daemon = Daemon(config, dns_listen=dns_listen, http_listen=http_listen)
    uvloop_run(daemon.run(), use_uvloop=use_uvloop)
