"""This instance in the cluster (the I/O shell around votes and the governor).

Takes the monitor's own view (`on_local`), serves it to peers as a report
whose sequence number grows with every status change (`wait_change` lets the
API long-poll), pulls every peer's report (`peers.py`), and publishes what the
vote decides as the health answers use. Nothing here runs on the DNS answer
path: answers read the snapshot it publishes, as they read the monitor's alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from geodns.cluster.governor import Event, Governor
from geodns.cluster.report import Report, config_hash, encode, observations
from geodns.cluster.votes import Vantage, Verdict, blind_targets, decide, homes_of, settling_grace
from geodns.config.model import ClusterConfig, Config, Peer
from geodns.health.health import UNKNOWN_HEALTH, Health, ProbeKey, Status, probe_keys
from geodns.health.snapshot import SnapshotStore

log = logging.getLogger(__name__)

PARTITION_LOG_EVERY = 60.0  # seconds between reminders while in a minority partition


@dataclass
class PeerState:
    peer: Peer
    report: Report | None = None
    heard: float | None = None  # monotonic time of the last good reply
    problem: str | None = None  # why it is not counted, when it is not

    def counted(self, now: float, timeout: float) -> bool:
        return self.report is not None and self.heard is not None and now - self.heard <= timeout


class ClusterNode:
    def __init__(
        self,
        config: Config,
        store: SnapshotStore,
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        assert config.cluster is not None
        self.store = store
        self.name = name
        self.clock = clock
        self.wall = wall
        self.boot = secrets.token_hex(8)
        self.seq = 0
        self.local: Mapping[ProbeKey, Health] = {}
        self._live: Mapping[ProbeKey, Health] = {}
        self.peers: dict[str, PeerState] = {}
        self.answered: dict[ProbeKey, Status] = {}  # what the answers use now
        self.agreed: dict[ProbeKey, Status] = {}  # the last decision made while not partitioned
        self.since: dict[ProbeKey, float] = {}  # wall time the answered status last changed
        self.verdict: Verdict | None = None
        self.partitioned = False
        self._partition_logged = 0.0
        self._isolated: frozenset[str] = frozenset()
        self._change = asyncio.Event()
        self._encoded: tuple[int, bytes] | None = None
        self._writer: str | None = None
        self._born = clock()
        self._alone_since: float | None = None  # since when no peer is counted
        self.on_writer: Callable[[], None] | None = None  # the writer changed: a sync round now
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Start, and every reload: peers, settings, the targets' datacenters."""
        assert config.cluster is not None
        self.config = config
        self.settings: ClusterConfig = config.cluster
        self.datacenter = config.server.datacenter
        old_hash = getattr(self, "hash", None)
        self.hash = config_hash(config)
        if old_hash is not None and old_hash != self.hash:
            self._changed()  # peers see the new config hash at once
        self.syncs_route53 = config.server.mode in ("route53", "both") and config.route53 is not None
        self.governor = Governor(
            self.settings.max_down_fraction, self.settings.down_window, self.settings.hold_max
        )
        targets = probe_keys(config)
        self.homes = homes_of((key, member.dc) for key, users in targets.items() for _pool, member in users)
        old = self.peers
        self.peers = {p.name: old.get(p.name) or PeerState(p) for p in self.settings.peers}
        for state, peer in zip(self.peers.values(), self.settings.peers, strict=True):
            state.peer = peer
        self.wanted = set(targets)

    # The own view.
    @property
    def report(self) -> Report:
        local = observations(self.local)
        return Report(self.name, self.datacenter, self.boot, self.seq, self.hash, local, self.syncs_route53)

    def writer(self) -> str | None:
        """Who pushes Route53 changes: the counted, non-isolated instance with the
        smallest name among those that sync Route53; never an isolated or partitioned
        one. A dead writer stops being counted after cluster.timeout: the next takes over."""
        isolated = self.verdict.isolated if self.verdict is not None else frozenset()
        names = [
            s.peer.name
            for s in self.counted()
            if s.report and s.report.route53 and s.peer.name not in isolated
        ]
        # Just started, a peer not yet heard may be the writer: not this instance, yet.
        settling = any(s.heard is None for s in self.peers.values()) and (
            self.clock() - self._born < self.settings.timeout
        )
        if self.syncs_route53 and self.name not in isolated and not self.partitioned and not settling:
            names.append(self.name)
        return min(names) if names else None

    def may_write(self) -> tuple[bool, str]:
        writer = self.writer()
        if writer == self.name:
            return True, "this instance writes"
        return False, f"{writer} writes" if writer else "no instance may write (isolated or partitioned)"

    def encoded(self) -> bytes:
        if self._encoded is None or self._encoded[0] != self.seq:
            self._encoded = (self.seq, encode(self.report))
        return self._encoded[1]

    def on_local(self, states: Mapping[ProbeKey, Health]) -> None:
        """The monitor's sink: this instance's own statuses changed (or were first known)."""
        before = {k: (h.status, h.reason) for k, h in self.local.items()}
        self.local = dict(states)
        self._live = states  # the monitor's own table: every probe's time, not only changes
        if {k: (h.status, h.reason) for k, h in self.local.items()} != before:
            self._changed()
        self.recompute(publish=True)

    def _changed(self) -> None:
        """The own report changed: a new sequence number, and the long-polls answer."""
        self.seq += 1
        self._change.set()
        self._change = asyncio.Event()

    async def wait_change(self, seq: int, seconds: float) -> None:
        """Until the own report moves past `seq`, or `seconds` pass (the long-poll)."""
        if self.seq != seq:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._change.wait(), seconds)

    # Peers' views.
    def heard(self, name: str, report: Report) -> None:
        state = self.peers[name]
        state.report, state.heard = report, self.clock()
        if state.problem is not None:
            log.warning("cluster: peer %s is counted again", name)
            state.problem = None
        self.recompute()

    def failed(self, name: str, problem: str) -> None:
        state = self.peers[name]
        if problem != state.problem:
            log.warning("cluster: peer %s: %s", name, problem)
            state.problem = problem

    def counted(self) -> list[PeerState]:
        now = self.clock()
        return [s for s in self.peers.values() if s.counted(now, self.settings.timeout)]

    # The decision.
    def recompute(self, *, publish: bool = False) -> None:
        """Vote again; publish when what answers use changed (or `publish`: the own
        view did, whose reasons and timings the status shows)."""
        own = Vantage(self.name, self.datacenter, {k: h.status for k, h in self.local.items()})
        peers = [
            Vantage(
                s.peer.name,
                s.peer.datacenter or (s.report.datacenter if s.report else None),  # the config is trusted
                {k: o.status for k, o in s.report.targets.items() if k in self.wanted} if s.report else {},
            )
            for s in self.counted()
        ]
        verdict = decide(
            own,
            peers,
            self.homes,
            quorum=self.settings.quorum,
            isolation=self.settings.isolation,
            peers_configured=bool(self.peers),
            blind=blind_targets(self._live, self.config.checks, self.wall()),
        )
        self.verdict = verdict
        self._note_isolation(verdict)
        self._note_partition(verdict)
        proposed = dict(verdict.states)
        now = self.clock()
        alone = bool(self.peers) and not peers
        if not alone:
            self._alone_since = None
        elif self._alone_since is None:
            self._alone_since = now
        # Peers fall silent before this instance's own probes have failed everything a cut
        # hides: for one cluster.timeout alone (and votes.settling_grace more while remote
        # probes are failing but undecided), wait and see whether it is a partition.
        settling = alone and self._settling(now)
        if verdict.partitioned or settling:
            # Never "everything but me is dead": the last state the cluster agreed on.
            proposed.update({k: s for k, s in self.agreed.items() if k in proposed})
        elif peers or not self.peers:
            # Agreed with someone (or alone by design); a decision taken alone is not.
            self.agreed = dict(verdict.states)
        out, event = self.governor.apply(self.answered, proposed, self.clock())
        if event is not None:
            self._log_governor(event)
        self._publish(out, publish)
        writer = self.writer()
        if writer != self._writer:
            log.warning("cluster: Route53 writer: %s -> %s", self._writer or "none", writer or "none")
            self._writer = writer
            if self.on_writer is not None:
                self.on_writer()

    def _settling(self, now: float) -> bool:
        assert self._alone_since is not None
        alone_for, timeout = now - self._alone_since, self.settings.timeout
        if alone_for < timeout:
            return True
        return alone_for < timeout + settling_grace(
            self._live, self.config.checks, self.homes, self.datacenter
        )

    def release(self, who: str) -> bool:
        event = self.governor.release(f"released by {who}")
        if event is None:
            return False
        self._log_governor(event)
        self.recompute()
        return True

    def _log_governor(self, event: Event) -> None:
        if event.kind == "hold":
            log.critical(
                "cluster: blast-radius governor holds %d target(s) up: %s",
                len(event.held),
                governor_event_text(event),
            )
        else:
            log.warning("cluster: governor hold ended: %s", governor_event_text(event))

    def _publish(self, out: dict[ProbeKey, Status], always: bool) -> None:
        now = self.wall()
        changed = False
        for key, status in out.items():
            old = self.answered.get(key)
            if old is status:
                continue
            changed = True
            self.since[key] = now
            if old not in (None, Status.UNKNOWN) and self.peers:  # alone, the monitor's line says it
                log.warning(
                    "cluster: %s target %s:%s: %s -> %s (%s)",
                    key.check,
                    key.address,
                    key.port,
                    old,
                    status,
                    self.why(key),
                )
        if changed or always or set(out) != set(self.answered):
            self.answered = out
            states = {key: self._health(key, status) for key, status in out.items()}
            self.store.publish(states)

    def _health(self, key: ProbeKey, status: Status) -> Health:
        local = self.local.get(key, UNKNOWN_HEALTH)
        if local.status is status:
            return local
        return dataclasses.replace(local, status=status, reason=self.why(key), since=self.since.get(key))

    def votes(self, key: ProbeKey) -> dict[str, Any] | None:
        """For /v1/status: the counted vantages saying down and up, and why."""
        verdict = self.verdict
        if verdict is None:
            return None
        return {
            "down": list(verdict.down_votes.get(key, ())),
            "up": list(verdict.up_votes.get(key, ())),
            "own": str(self.local[key].status) if key in self.local else "unknown",
            "summary": self.why(key),
        }

    def why(self, key: ProbeKey) -> str:
        """'down: 2 of 3 vantages (par: HTTP 503; ams: timeout); nyc says up'."""
        verdict = self.verdict
        if verdict is None:
            return ""
        downs, ups = verdict.down_votes.get(key, ()), verdict.up_votes.get(key, ())
        reasons = []
        for name in downs:
            reason = self.local[key].reason if name == self.name and key in self.local else ""
            if name != self.name and (state := self.peers.get(name)) and state.report:
                obs = state.report.targets.get(key)
                reason = obs.reason if obs else ""
            reasons.append(f"{name}: {reason or 'down'}")
        text = f"{len(downs)} of {len(downs) + len(ups)} vantages say down"
        if reasons:
            text += f" ({'; '.join(reasons)})"
        if ups:
            text += f"; {', '.join(ups)} say up"
        if self.governor.hold is not None and key in self.governor.hold.held:
            text += "; held up by the governor"
        if verdict.partitioned:
            text += "; minority partition: the last agreed state"
        return text

    def _note_isolation(self, verdict: Verdict) -> None:
        if verdict.isolated != self._isolated:
            for name in verdict.isolated - self._isolated:
                log.warning(
                    "cluster: vantage %s is isolated (alone sees most targets outside its datacenter"
                    " down): its votes are not counted",
                    name,
                )
            for name in self._isolated - verdict.isolated:
                log.warning("cluster: vantage %s is no longer isolated: its votes count again", name)
            self._isolated = verdict.isolated

    def _note_partition(self, verdict: Verdict) -> None:
        now = self.clock()
        if verdict.partitioned and (
            not self.partitioned or now - self._partition_logged >= PARTITION_LOG_EVERY
        ):
            log.error(
                "cluster: minority partition: no peer heard within %gs and most targets outside %s"
                " look down from here; answering with the last state the cluster agreed on",
                self.settings.timeout,
                self.datacenter or "this instance",
            )
            self._partition_logged = now
        elif self.partitioned and not verdict.partitioned:
            log.warning("cluster: out of the minority partition: peers heard again")
        self.partitioned = verdict.partitioned

    def figures(self) -> dict[str, Any]:
        """For the metrics: peers (counted, seconds since heard), vantages' isolation,
        partition and governor."""
        now = self.clock()
        isolated = self.verdict.isolated if self.verdict is not None else frozenset()
        hold = self.governor.hold
        return {
            "peers": {
                name: (s.counted(now, self.settings.timeout), None if s.heard is None else now - s.heard)
                for name, s in self.peers.items()
            },
            "vantages": {name: name in isolated for name in [self.name, *self.peers]},
            "partitioned": self.partitioned,
            "hold": 0 if hold is None else 1,
            "held": 0 if hold is None else len(hold.held),
        }

    def trouble(self) -> list[str]:
        if self.partitioned:
            return ["minority partition: no peer heard and most remote targets look down from here"]
        return []

    async def tick(self) -> None:
        """Peers that fell silent stop counting within half an interval of their timeout."""
        counted = {s.peer.name for s in self.counted()}
        while True:
            await asyncio.sleep(self.settings.interval / 2)
            now = {s.peer.name for s in self.counted()}
            if now != counted or self.writer() != self._writer or self._alone_since is not None:
                for name in counted - now:
                    self.failed(name, f"not heard from within {self.settings.timeout:g}s: not counted")
                counted = now
                self.recompute()


def governor_event_text(event: Event) -> str:
    names = ", ".join(f"{k.address}:{k.port}" for k in sorted(event.held, key=str)[:20])
    more = f" and {len(event.held) - 20} more" if len(event.held) > 20 else ""
    return f"{event.why}: {names}{more}"
