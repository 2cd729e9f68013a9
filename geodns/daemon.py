"""Wires config, zones and listeners together; SIGHUP reloads, SIGTERM stops."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geodns import __version__, durable
from geodns.api import browser
from geodns.api.admin import AdminServer, make_app
from geodns.api.metrics import Metrics
from geodns.api.render import Rendered, Steps, joined, metrics_steps
from geodns.api.status import Story, status_document, status_steps
from geodns.api.tokens import load_api_token, load_cluster_token, load_read_token, say_who_may_access
from geodns.cluster.node import ClusterNode
from geodns.cluster.peers import pull_all
from geodns.config import Config, load
from geodns.config.advice import advice
from geodns.config.model import ListenAddress, worker_count
from geodns.dns.handler import ServingState, Stats
from geodns.dns.server import DnsServer, without_missing_ipv6
from geodns.errors import GeoDnsError
from geodns.eventloop import uvloop_run
from geodns.geoip.database import watch_files
from geodns.health.capacity import capacity_warnings, fd_budget
from geodns.health.monitor import Monitor
from geodns.health.overrides import Override
from geodns.health.snapshot import HealthSnapshot, SnapshotStore
from geodns.reloading import release, reread_config, restart_needed
from geodns.sdnotify import Notifier
from geodns.serving import geo_lookup, next_state, serving_state
from geodns.startup import claim_fds, cpus, freeze_long_lived, instance_name, with_overrides, zone_compiler
from geodns.steering.explain import add_votes, explain
from geodns.steering.geochoice import steering_label
from geodns.steering.localanswers import local_answers
from geodns.steering.overridestore import OverrideStore
from geodns.steering.poolwatch import PoolWatch
from geodns.workers.pool import WorkerPool
from geodns.zone.zone import Zone

if TYPE_CHECKING:
    from geodns.route53.sync import Reconciler, Route53Sync

log = logging.getLogger(__name__)

CATCH_UP_WAIT = 1.0  # seconds a drain's response waits for every DNS worker to answer with it
API_CACHE_TTL = 0.5  # seconds a rendered /v1/status or /metrics is reused within one snapshot


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
        self.metrics_registry.loop_lag.set_function(lambda: self.monitor.watch.recent(10.0))
        self.metrics_registry.overrides_unreadable.set_function(lambda: len(self.override_store.problems))
        self.metrics_registry.watch_overrides(lambda: self.override_store.overrides)
        self.metrics_registry.watch_geo(self.stats, lambda key: steering_label(self.config, key))
        self.override_store = OverrideStore(self.config, self.store)
        self.override_store.history = self.monitor.history
        # Which datacenter each pool answers from, and a loud word when one fails open.
        self.pool_watch = PoolWatch(
            self.config, time.time, self.monitor.history, self.metrics_registry.set_pool, self.monitor.known
        )
        self.store.subscribe(self.pool_watch.on_snapshot)
        self.story = Story(self.pool_watch.to_json, self.monitor.history, self._story_extra)
        self._stopping = threading.Event()  # wakes the Route53 thread out of its sleeps
        self.route53: Route53Sync | None = None
        if self.config.server.mode in ("route53", "both") and self.config.route53 is not None:
            # boto3 costs ~0.3 s to import: only a daemon that syncs Route53 pays for it.
            from geodns.route53.sync import Route53Sync  # noqa: PLC0415

            self.route53 = Route53Sync(
                self.config, self.store, self._reconciler(self.config), self.monitor.known
            )
            sync = self.route53
            self.metrics_registry.watch_route53(lambda: sync.failed_rounds)
        self._api_token = load_api_token(self.config)
        self._read_token = load_read_token(self.config)
        self._cluster_token = load_cluster_token(self.config)
        # Several instances: the monitor's own view goes to the vote, which publishes.
        self.cluster: ClusterNode | None = None
        if self.config.cluster is not None:
            self.cluster = ClusterNode(self.config, self.store, instance_name(self.config))
            self.monitor.sink = self.cluster.on_local
            self.metrics_registry.watch_cluster(self.cluster.figures)
            if self.route53 is not None and self.cluster.peers:
                self.route53.may_write = self.cluster.may_write
                self.cluster.on_writer = self.route53.trigger
        self._cluster_tasks: list[asyncio.Task[None]] = []
        self.state = serving_state(self.config, self.store.current())
        # Every new snapshot (and only that) swaps the answers' view of health.
        self.store.subscribe(self._on_snapshot)
        # DNS answered by worker processes (server.workers), or here when there is one.
        count = 1 if self.config.server.mode == "route53" else worker_count(self.config.server, cpus())
        self.pool = WorkerPool(count, self.stats) if count > 1 else None
        if self.pool is not None:
            self.metrics_registry.watch_workers(self.pool.figures)
        self.dns = DnsServer(
            lambda: self.state,
            self.stats,
            tcp_idle_timeout=self.config.server.tcp_idle_timeout,
            tcp_max_connections=self.config.server.tcp_max_connections,
            tcp_message_timeout=self.config.server.tcp_message_timeout,
            tcp_max_lifetime=self.config.server.tcp_max_lifetime,
            tcp_max_queued=self.config.server.tcp_max_queued,
            rate_limit=self.config.server.rate_limit,
        )
        self.admin: AdminServer | None = None
        # Rendered in steps, kept half a second or until the next snapshot: a dozen
        # status tabs and a scraper cost one rendering, never a stall.
        self._status_cache = Rendered(self._status_steps, lambda: self.store.current().version, API_CACHE_TTL)
        self._metrics_cache = Rendered(
            lambda: metrics_steps(self.metrics_registry.registry),
            lambda: self.store.current().version,
            API_CACHE_TTL,
        )
        self.serving = False
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self._background: set[asyncio.Task[None]] = set()
        self.notifier = Notifier()  # systemd's Type=notify, when run by it
        self._generation = 1  # configurations loaded: with the snapshot version, /v1/answers' token
        self._change = asyncio.Event()

    def _reconciler(self, config: Config) -> Reconciler:
        from geodns.route53.client import Route53Client  # noqa: PLC0415 - see __init__
        from geodns.route53.sync import Reconciler  # noqa: PLC0415

        assert config.route53 is not None
        client = Route53Client(config.route53, self.metrics_registry, sleep=self._interruptible_sleep)
        return Reconciler(config, client, self.metrics_registry)

    def _interruptible_sleep(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            from geodns.route53.client import Route53Error  # noqa: PLC0415 - see __init__

            raise Route53Error("stopping")

    def _swap(self, state: ServingState) -> None:
        self.state = state

    def _changed(self) -> None:
        """Wake the long polls of /v1/answers: a new snapshot or a new config."""
        self._change.set()
        self._change = asyncio.Event()

    def change_token(self) -> str:
        return f"{self._generation}.{self.store.current().version}"

    async def wait_change(self, token: str) -> None:
        if token != self.change_token():
            return
        await self._change.wait()

    def answers(self, names: list[str], client: str) -> dict[str, Any]:
        return {
            "token": self.change_token(),
            "names": local_answers(self.config, self.store.current(), names, client),
        }

    def _on_snapshot(self, snapshot: HealthSnapshot) -> None:
        self._changed()
        if self.pool is not None:
            self.pool.publish(snapshot)
        else:
            self._swap(next_state(self.config, self.state, snapshot))

    def _story_extra(self) -> dict[str, Any]:
        return {"route53": self.route53.to_json() if self.route53 is not None else None}

    def dns_bound(self) -> list[ListenAddress]:
        """The DNS addresses answered on (ports chosen when the config said 0)."""
        return self.pool.bound if self.pool is not None else self.dns.bound

    # AdminSource: what the HTTP API reads.
    def ready(self) -> tuple[bool, list[str]]:
        reasons = [f"waiting for {k.check} {k.address}:{k.port}" for k in self.monitor.pending()]
        reasons += self.monitor.checker_trouble()
        if self.cluster is not None:
            reasons += self.cluster.trouble()
        if self.pool is not None:
            reasons += self.pool.trouble()
        if self.route53 is not None:
            reasons += self.route53.trouble()
        reasons += [
            f"drains may be missing: {problem} (acknowledge with `geodns ack` or any drain change)"
            for problem in self.override_store.problems
        ]
        return not reasons, reasons

    def status(self) -> dict[str, Any]:
        ready, _ = self.ready()
        votes = self.cluster.votes if self.cluster is not None and self.cluster.peers else None
        return status_document(
            self.config, self.store.current(), self.monitor.states, ready, votes, self.story
        )

    def metrics(self) -> bytes:
        return self.metrics_registry.render()

    async def status_json(self, *, gzipped: bool = False) -> bytes:
        return await self._status_cache.get(gzipped=gzipped)

    async def metrics_text(self, *, gzipped: bool = False) -> bytes:
        return await self._metrics_cache.get(gzipped=gzipped)

    def _status_steps(self) -> Steps:
        ready, _ = self.ready()
        live = dict(self.monitor.states)  # a copy: probes keep writing the monitor's table
        votes = self.cluster.votes if self.cluster is not None and self.cluster.peers else None
        return joined(status_steps(self.config, self.store.current(), live, ready, votes, self.story))

    @property
    def api_token(self) -> str | None:
        return self._api_token

    @property
    def cluster_node(self) -> ClusterNode | None:
        return self.cluster

    @property
    def cluster_token(self) -> str | None:
        return self._cluster_token

    def _start_cluster(self) -> None:
        for task in self._cluster_tasks:
            task.cancel()
        self._cluster_tasks = []
        if self.cluster is None or not self.cluster.peers or self._cluster_token is None:
            return
        loop = asyncio.get_running_loop()
        self._cluster_tasks = [
            loop.create_task(pull_all(self.cluster, self._cluster_token), name="cluster-pull"),
            loop.create_task(self.cluster.tick(), name="cluster-tick"),
        ]

    @property
    def read_token(self) -> str | None:
        return self._read_token

    def overrides(self) -> list[Override]:
        return list(self.override_store.overrides)

    def add_override(
        self, target: str, state: str, reason: str, duration: float | None, by: str = ""
    ) -> Override:
        return self.override_store.add(target, state, reason, duration, by)

    def remove_override(self, target: str) -> list[Override]:
        return self.override_store.remove(target)

    async def answers_caught_up(self) -> list[str]:
        if self.pool is None:
            return []  # answered here: the next query reads the new snapshot
        lagging = await self.pool.caught_up(CATCH_UP_WAIT)
        return [f"DNS worker {index}" for index in lagging]

    def acknowledge_override_problems(self) -> list[str]:
        return self.override_store.acknowledge()

    def api_hosts(self) -> frozenset[str]:
        bound = self.admin.bound if self.admin is not None else None
        if bound is None:
            return frozenset()
        return browser.allowed_hosts(bound.host, bound.port, self.config.server.api_allowed_hosts)

    def explain(self, name: str, qtype: str, client: str, ecs: str | None) -> dict[str, Any]:
        doc = explain(self.config, self.store.current(), name, qtype, client, ecs, geo_lookup(self.config))
        if self.cluster is not None and self.cluster.peers:
            add_votes(doc, self.config, self.cluster.why)
        return doc

    async def start(self) -> None:
        try:
            durable.private_dir(self.config.server.state_dir)  # 0700; refused when others may write
        except OSError as exc:
            raise GeoDnsError(f"server.state_dir: {exc}") from exc
        limit = claim_fds(self.config)
        log.debug("open-files limit %d, budget %d", limit, sum(fd_budget(self.config).values()))
        for warning in [*advice(self.config), *capacity_warnings(self.config)]:
            log.warning("%s", warning)
        freeze_long_lived()
        self.override_store.start()
        await self.monitor.start()
        await self._first_results()
        if self.config.server.mode != "route53":
            addresses = without_missing_ipv6(self.config.server.dns_listen)
            if self.pool is not None:
                await self.pool.start(self.config, self.store.current(), addresses)
            else:
                await self.dns.start(addresses)
        if self.route53 is not None:
            self.route53.start()
        if self.config.server.http_listen is not None:
            self.admin = AdminServer(make_app(self), max_connections=self.config.server.api_max_connections)
            await self.admin.start(self.config.server.http_listen)
            say_who_may_access(self.config.server.http_listen, self._api_token, self._read_token)
        self._start_cluster()
        if self.config.geoip is not None:
            self._background.add(asyncio.get_running_loop().create_task(self._watch_geoip()))
        self.serving = True
        # Again now that probe tasks, sockets and the first results exist: thousands of
        # long-lived objects the collector would otherwise walk on every full pass.
        gc.freeze()
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

    async def _watch_geoip(self) -> None:
        """A GeoIP database replaced on disk (geoipupdate renames a new file in) is
        read by a reload: checked like any config, so a bad file keeps the old one."""

        def files() -> list[Path | None]:
            geoip = self.config.geoip
            return [geoip.database, geoip.asn_database] if geoip is not None else []

        def interval() -> float:
            return self.config.geoip.watch_interval if self.config.geoip is not None else 30.0

        async for _changed in watch_files(files, interval):
            log.info("a GeoIP database changed on disk: reloading to read it")
            self.request_reload()

    async def reload(self) -> bool:
        """Load the config again; on any problem keep serving the old one (counted in
        geodns_reloads_total{result}, for an alert on a reload that failed)."""
        self.notifier.reloading()
        ok = await self._reload()
        self.metrics_registry.reloaded(ok, time.time())
        zones = len(self.config.zones.zones)
        self.notifier.ready(
            f"serving {zones} zone(s)"
            + ("" if ok else "; the last reload FAILED, the previous config serves")
        )
        return ok

    async def _reload(self) -> bool:
        """Load the config again; on any problem keep serving the old one. Zone files
        are compiled in a child process, read back in steps between queries, and
        zones whose input did not change are kept as they are: the answer loop is
        never held for more than a step."""
        path = self.config.source
        log.info("reloading configuration from %s", path)
        reread = await reread_config(self.config, self.dns_override, self.http_override)
        if reread is None:
            return False
        new = reread.config
        for warning in restart_needed(self.config, new):
            log.warning("%s", warning)
        old_state, old_zones = self.state, self.config.zones.zones
        self.config = new
        self._api_token, self._read_token = (
            reread.api_token,
            reread.read_token,
        )  # the old ones stop working now
        if (new.cluster is None) != (self.cluster is None):
            log.warning("the cluster section was added or removed in %s; restart geodns to apply it", path)
        elif self.cluster is not None:
            self._cluster_token = reread.cluster_token
            self.cluster.configure(new)
            self._start_cluster()
        self.state = serving_state(new, self.store.current())  # one swap: each query sees old or new
        self.dns.rate_limit(new.server.rate_limit)
        self.override_store.update(new)
        self.pool_watch.update_config(new)
        if self.route53 is not None and new.route53 is not None:
            self.route53.settings = new.route53
            self.route53.reconciler = self._reconciler(new)
        await self.monitor.update(new)
        if self.pool is not None:
            problems = await self.pool.configure(new)
            if problems:
                log.error("reloaded, but not every DNS worker serves it: %s", "; ".join(problems))
        kept = {id(z) for z in new.zones.zones.values()}
        self._release_later(old_state, [z for z in old_zones.values() if id(z) not in kept])
        gc.freeze()  # new long-lived objects out of the collector's sight, without a full pass
        log.info("reloaded: serving %d zone(s)", len(new.zones.zones))
        self._generation += 1
        self._changed()
        return True

    def _release_later(self, state: ServingState, zones: list[Zone]) -> None:
        task = asyncio.get_running_loop().create_task(release(state, zones), name="release previous config")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def request_reload(self) -> None:
        """SIGHUP. A reload already running is not interrupted, and the signal is not
        dropped either: one more reload follows it, so the daemon always ends up
        serving what is on disk now (any number of signals meanwhile make one)."""
        if self._reloading is not None and not self._reloading.done():
            if not self._reload_again:
                log.info("a reload is running; another one will follow it")
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload_until_current())

    async def _reload_until_current(self) -> None:
        while True:
            self._reload_again = False
            try:
                await self.reload()
            except Exception:
                # Never "Task exception was never retrieved": the old config keeps serving.
                log.exception(
                    "reload failed with an internal error; still serving the previous configuration"
                )
            if not self._reload_again:
                return

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        try:
            await self.start()
            zones = len(self.config.zones.zones)
            self.notifier.ready(f"serving {zones} zone(s); {len(self.monitor.targets)} probe target(s)")
            self.notifier.start_watchdog()
            await self._stop.wait()
            log.info("stopping")
            self.notifier.stopping()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.stop_watchdog()
            await self.stop()

    async def stop(self) -> None:
        self.serving = False
        for task in [self._reloading, *self._background, *self._cluster_tasks]:
            if task is not None:
                task.cancel()
        await self.monitor.stop()
        if self.pool is not None:
            await self.pool.stop()
        await self.dns.stop()
        if self.admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.admin.stop(), 1.0)


def run(
    path: Path,
    dns_listen: list[ListenAddress] | None,
    http_listen: ListenAddress | None,
    *,
    use_uvloop: bool = True,
) -> None:
    """Load, serve until SIGTERM. Raises ConfigError before binding anything."""
    log.info("geodns %s starting: pid %d, config %s", __version__, os.getpid(), path.resolve())
    config = load(path, use_cache=True, compiler=zone_compiler(path))
    daemon = Daemon(config, dns_listen=dns_listen, http_listen=http_listen)
    uvloop_run(daemon.run(), use_uvloop=use_uvloop)
