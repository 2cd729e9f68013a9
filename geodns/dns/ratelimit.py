"""Response rate limiting (RRL) for DNS over UDP.

UDP sources can be forged: without a limit, anyone can aim our answers at a
victim (one spoofed source got 80,000 replies/s, a big TXT with EDNS amplifies
25x). As NSD, Knot and BIND do, responses are counted per client network (/24,
/56), response class and name: NXDOMAIN by the zone (random names share one
bucket), referrals by the delegation, wildcard answers by the wildcard, errors
by the network alone. A limited response is dropped, except every `slip`-th,
which goes out empty and truncated: a real resolver behind a forged flood
retries over TCP (never limited) and still gets its answer.

Cost on the answer path: a network that sent no more than the rate in the
current second cannot have any (class, name) bucket over the rate, so the
common case is one dict lookup and a counter. Only a network over the rate
(an attack, or a busy resolver) has its responses classified and charged to
token buckets; it stays on that path while it keeps sending more than the
rate per second. Memory is fixed: networks and buckets are evicted oldest
first beyond `table_size`.
"""

from __future__ import annotations

import logging
import socket
from collections import OrderedDict
from typing import NamedTuple

from geodns.config.model import RateLimit
from geodns.dns.handler import Stats
from geodns.dns.wire import Malformed, parse_question
from geodns.zone.names import Name, to_text
from geodns.zone.zone import ZoneSet

log = logging.getLogger(__name__)

# Response classes, as NSD and BIND tell them apart.
POSITIVE, NODATA, NXDOMAIN, REFERRAL, WILDCARD, ANY, ERROR = range(7)
CLASS_NAMES = ("positive", "nodata", "nxdomain", "referral", "wildcard", "any", "error")

_RCODE_NXDOMAIN = 3
_AA = 0x04  # in the reply's third byte
_TC = 0x02
_TYPE_ANY = 255
_LOG_EVERY = 1.0  # seconds between log lines about newly limited networks
_MEMO_SIZE = 10_000  # classified queries remembered (a busy resolver asks the same things)

NetKey = tuple[int, int]  # (4 or 6, the address's network bits)


class Ident(NamedTuple):
    """What a response is counted as."""

    cls: int
    name: Name
    qtype: int  # positive answers are counted per type too; 0 otherwise
    end: int  # where the query's question ends (a slipped reply echoes it)


class Net:
    """One client network: how many responses it got in the current second."""

    __slots__ = ("count", "exempt", "hot", "key", "limiting", "until")

    def __init__(self, key: NetKey, exempt: bool) -> None:
        self.key = key
        self.exempt = exempt
        self.until = 0.0  # end of the current one-second window
        self.count = 0
        self.hot = False  # over the rate in the previous window: every response is charged
        self.limiting = False  # logged as limited; cleared once it cools down


class Bucket:
    __slots__ = ("last", "limited", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.last = now
        self.limited = 0


def classify(data: bytes, reply: bytes, zones: ZoneSet) -> Ident:
    """The class and name a reply is counted under (pure)."""
    try:
        q = parse_question(data)
    except Malformed:
        return Ident(ERROR, (), 0, 12)
    rcode = reply[3] & 0x0F
    if rcode not in (0, _RCODE_NXDOMAIN):
        return Ident(ERROR, (), 0, q.end)
    if q.qtype == _TYPE_ANY:
        return Ident(ANY, q.name, 0, q.end)
    zone = zones.find(q.name)
    if zone is None:
        return Ident(ERROR, (), 0, q.end)
    if rcode == _RCODE_NXDOMAIN:
        return Ident(NXDOMAIN, zone.origin, 0, q.end)  # random names: one bucket per zone
    if not (reply[6] << 8 | reply[7]):
        if not reply[2] & _AA:
            return Ident(REFERRAL, zone.find_cut(q.name) or q.name, 0, q.end)
        return Ident(NODATA, q.name, 0, q.end)
    if zone.has_wildcards and not zone.exists(q.name) and zone.find_cut(q.name) is None:
        return Ident(WILDCARD, ("*", *zone.closest_encloser(q.name)), 0, q.end)
    return Ident(POSITIVE, q.name, q.qtype, q.end)


def truncated(data: bytes, reply: bytes, end: int) -> bytes:
    """The reply's header with TC set and no records, and the query's question:
    a resolver that really asked retries over TCP."""
    qdcount = b"\x00\x01" if end > 12 else b"\x00\x00"
    return reply[:2] + bytes((reply[2] | _TC, reply[3])) + qdcount + bytes(6) + data[12:end]


def address(host: str) -> tuple[int, int] | None:
    """(4 or 6, the address as an integer); None for what is not an address."""
    try:
        if ":" in host:
            return 6, int.from_bytes(socket.inet_pton(socket.AF_INET6, host.split("%", 1)[0]), "big")
        return 4, int.from_bytes(socket.inet_aton(host), "big")
    except OSError:
        return None


def network_key(host: str, v4_prefix: int, v6_prefix: int) -> NetKey | None:
    """The network of `host` as (family, its high bits)."""
    found = address(host)
    if found is None:
        return None
    family, value = found
    return family, value >> (32 - v4_prefix if family == 4 else 128 - v6_prefix)


def network_text(key: NetKey, v4_prefix: int, v6_prefix: int) -> str:
    family, bits = key
    if family == 4:
        return (
            f"{socket.inet_ntop(socket.AF_INET, (bits << (32 - v4_prefix)).to_bytes(4, 'big'))}/{v4_prefix}"
        )
    address = (bits << (128 - v6_prefix)).to_bytes(16, "big")
    return f"{socket.inet_ntop(socket.AF_INET6, address)}/{v6_prefix}"


class RateLimiter:
    """One table of networks and buckets (per process: each DNS worker has its
    own, and gets its share of the configured rate)."""

    def __init__(self, settings: RateLimit, stats: Stats, share: int = 1) -> None:
        self.settings = settings
        self.stats = stats
        # Queries from one source spread evenly over the workers' sockets (the
        # kernel hashes source ports), so each worker allows its share.
        self.rate = max(1.0, settings.responses_per_second / share)
        self.burst = self.rate  # one second's worth
        self.count_limit = int(self.rate)
        self.slip = settings.slip
        self.size = settings.table_size
        self._exempt = [
            (net.version, int(net.network_address), net.max_prefixlen - net.prefixlen)
            for net in settings.exempt
        ]
        self._hosts: dict[str, Net] = {}
        self._nets: OrderedDict[NetKey, Net] = OrderedDict()
        self._buckets: OrderedDict[tuple[Net, int], Bucket] = OrderedDict()
        self._ids: dict[tuple[int, Name, int], int] = {}  # what a reply is counted as, numbered
        self._memo: dict[bytes, tuple[Ident, int]] = {}
        self._memo_zones: ZoneSet | None = None
        self._log_after = 0.0
        self._unlogged = 0

    def allow(self, host: str, data: bytes, reply: bytes, now: float, zones: ZoneSet) -> bytes | None:
        """The reply to send to `host` (maybe truncated), or None to send nothing."""
        if self.admit(host, now):
            return reply
        return self.charge(host, data, reply, now, zones)

    def admit(self, host: str, now: float) -> bool:
        """Count one reply to `host`; True when it may go as it is (its network is
        within the rate), else `charge` decides. The C answer loop calls this for
        every cached reply it sends."""
        net = self._hosts.get(host)
        if net is None:
            net = self._net(host)
        if now >= net.until:
            self._roll(net, now)
        net.count += 1
        return (net.count <= self.count_limit and not net.hot) or net.exempt

    def charge(self, host: str, data: bytes, reply: bytes, now: float, zones: ZoneSet) -> bytes | None:
        """The reply as its (network, class, name) bucket lets it go, for a reply that
        `admit` counted and did not pass."""
        net = self._hosts.get(host)
        if net is None:
            net = self._net(host)
        return self._charge(net, data, reply, now, zones)

    def _net(self, host: str) -> Net:
        s = self.settings
        key = network_key(host, s.ipv4_prefix, s.ipv6_prefix)
        if key is None:
            key = (0, hash(host))
        net = self._nets.get(key)
        if net is None:
            net = Net(key, key[0] != 0 and self._is_exempt(host))
            self._nets[key] = net
            if len(self._nets) > self.size:
                self._nets.popitem(last=False)
        if len(self._hosts) >= self.size:
            self._hosts.clear()  # a memo: rebuilt from `_nets` as sources come back
        self._hosts[host] = net
        return net

    def _is_exempt(self, host: str) -> bool:
        found = address(host)
        if found is None:
            return False
        family, value = found
        return any(
            family == version and value >> shift == network >> shift
            for version, network, shift in self._exempt
        )

    def _roll(self, net: Net, now: float) -> None:
        # Hot for the next second when the one that just ended was over the rate.
        net.hot = net.count > self.count_limit and now < net.until + 1.0
        if not net.hot:
            net.limiting = False
        net.count = 0
        net.until = now + 1.0

    def _charge(self, net: Net, data: bytes, reply: bytes, now: float, zones: ZoneSet) -> bytes | None:
        """Count this reply in its (network, class, name) bucket: the path of a
        network over the rate, so every step here is paid per reply."""
        if zones is not self._memo_zones:
            self._memo.clear()
            self._memo_zones = zones
        memo_key = data[2:] + reply[2:8]  # the same question, and the same kind of reply
        found = self._memo.get(memo_key)
        if found is None:
            found = self._learn(memo_key, data, reply, zones)
        ident, ident_id = found
        key = (net, ident_id)  # cheap to hash: an object and an int
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(self.burst, now)
            if len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        tokens = bucket.tokens + (now - bucket.last) * self.rate
        if tokens > self.burst:  # noqa: PLR1730 - min() is a call, and this runs per reply
            tokens = self.burst
        bucket.last = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            return reply
        bucket.tokens = tokens
        bucket.limited += 1
        self.stats.rate_limited += 1
        if not net.limiting:
            net.limiting = True
            self._say_limited(net, ident, now)
        if self.slip and bucket.limited % self.slip == 0:
            self.stats.rate_slipped += 1
            return truncated(data, reply, ident.end)
        return None

    def _learn(self, memo_key: bytes, data: bytes, reply: bytes, zones: ZoneSet) -> tuple[Ident, int]:
        ident = classify(data, reply, zones)
        counted_as = (ident.cls, ident.name, ident.qtype)
        ident_id = self._ids.get(counted_as)
        if ident_id is None:
            if len(self._ids) >= self.size:
                # Numbers are never reused while a bucket may hold them: start over.
                self._ids.clear()
                self._buckets.clear()
            ident_id = self._ids[counted_as] = len(self._ids)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        found = self._memo[memo_key] = (ident, ident_id)
        return found

    def _say_limited(self, net: Net, ident: Ident, now: float) -> None:
        """One line per newly limited network, at most one a second (a flood from
        many networks must not become a flood of log lines)."""
        if now < self._log_after:
            self._unlogged += 1
            return
        self._log_after = now + _LOG_EVERY
        s = self.settings
        what = CLASS_NAMES[ident.cls]
        if ident.name or ident.cls != ERROR:
            what += f" for {to_text(ident.name)}"
        more = (
            f"; {self._unlogged} more network(s) limited since the last such line" if self._unlogged else ""
        )
        self._unlogged = 0
        slip = f"1 in {self.slip} sent truncated" if self.slip else "all dropped"
        log.warning(
            "rate limiting UDP responses to %s: %s over %g/s (limited responses: %s)%s",
            network_text(net.key, s.ipv4_prefix, s.ipv6_prefix) if net.key[0] else "an unparsable address",
            what,
            self.rate,
            slip,
            more,
        )
