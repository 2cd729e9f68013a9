"""The answer cache's storage: encoded replies without their ID, bounded in bytes,
least recently used first out. Kept apart from the code that fills it so a
ServingState can own one.

Keys are the query's bytes after the ID with what cannot change the reply
folded away (see `fold`): the letter case of the name, and the EDNS buffer size
beyond what it does to truncation. Stored replies carry the question in lower
case; the client's own spelling is spliced back in on the way out (0x20).

An entry is the reply (bytes), or, for answers that vary:
- Rotating: up to VARIANTS drawn variants of a weighted/all answer, served in
  turn so answers follow the weights; drawn lazily, one per query, so no
  single query pays for more than one resolution;
- PerClient: replies per topology-rule key of the source address (geo pools
  answering without ECS).
"""

from __future__ import annotations

from collections import OrderedDict

from geodns.dns.wire import udp_limit

DEFAULT_SIZE = 64 * 1024 * 1024  # bytes, all transports together
VARIANTS = 16  # drawn replies per random answer
# Bytes an entry costs beyond its key and reply: the dict slot, the OrderedDict
# link and two bytes objects' headers (measured with tracemalloc: bench/abuse.py).
ENTRY_OVERHEAD = 200
PER_CLIENT_OVERHEAD = 64  # one more slot in a PerClient's dict
# EDNS sizes resolvers send by default (BIND, Unbound, Knot, PowerDNS: 1232; older
# ones 4096; some public resolvers 1400-1452, Windows 4000): their exact bytes get
# an entry of their own; any other size is found through its folded key.
COMMON_SIZES = frozenset({1220, 1232, 1280, 1400, 1410, 1452, 4000, 4096})
_HEADER = 12
_OPT_TYPE = b"\x00\x29"


class Rotating:
    __slots__ = ("index", "replies", "size")

    def __init__(self, first: bytes) -> None:
        self.replies = [first]
        self.index = 0
        self.size = len(first)

    def complete(self) -> bool:
        return len(self.replies) >= VARIANTS

    def next(self) -> bytes:
        self.index = (self.index + 1) % len(self.replies)
        return self.replies[self.index]


class PerClient:
    __slots__ = ("by_key",)

    def __init__(self) -> None:
        self.by_key: dict[int, bytes | Rotating] = {}

    @property
    def size(self) -> int:
        # Summed when asked (rarely: on eviction), so a variant drawn later for one
        # of its clients is counted without a link back to this entry.
        return sum(payload(value) + PER_CLIENT_OVERHEAD for value in self.by_key.values())


class PerSubnet(PerClient):
    """ECS answers of geo pools, one reply per decision (rule, datacenter order and
    scope), not per client subnet: a million /24s are a handful of entries. The
    reply kept carries its scope; the client's own address is spliced in."""

    __slots__ = ()


Entry = bytes | Rotating | PerClient


def payload(value: Entry) -> int:
    return len(value) if value.__class__ is bytes else value.size  # type: ignore[union-attr]


class Folded:
    """A query's cache keys: `universal` for replies that fit any client (small
    and complete), `exact` for replies that depend on the client's size limit.
    With an EDNS Client Subnet option, `ecs` is the length of its address (the
    query's last bytes): answers that do not depend on the subnet are kept under
    the keys without it and get the client's address spliced back into the ECS
    option they echo (the reply's last bytes)."""

    __slots__ = ("aliasable", "ecs", "end", "exact", "lowered", "universal")

    def __init__(
        self, universal: bytes, exact: bytes, end: int, aliasable: bool, lowered: bytes, ecs: int = 0
    ) -> None:
        self.universal = universal
        self.exact = exact
        self.end = end  # offset of the question name's last byte (its root label)
        # Worth an entry under `lowered`, the query's own bytes with the name in lower
        # case: a common EDNS size (ours or more, or a class's own); random sizes are not.
        # A later query with these bytes in any spelling then costs one lookup
        # (`cased`), not a fold.
        self.aliasable = aliasable
        self.lowered = lowered
        self.ecs = ecs


def fold(data: bytes, udp_cap: int | None) -> Folded | None:
    """Cache keys for a query, or None when it is too odd to fold (the full path
    decides). The name is lowercased; with `udp_cap` (UDP), the EDNS size becomes
    the limit it implies (`wire.udp_limit`: at most 7 classes), or 0 in `universal`."""
    end = data.find(b"\0", _HEADER)
    if end < 0 or len(data) < end + 5:
        return None
    name = data[_HEADER:end]
    lower = name.lower()
    head = data[2:_HEADER] + lower
    rest = data[end:]
    universal = exact = lowered = head + rest
    aliasable = True
    opt = end + 5
    ecs = 0
    if (
        len(data) >= opt + 11
        and data[6:12] == b"\0\0\0\0\0\1"  # no answer/authority records, one additional: the OPT
        and data[opt] == 0
        and data[opt + 1 : opt + 3] == _OPT_TYPE
    ):
        ecs = ecs_address_length(data, opt + 11)
        if udp_cap is not None:
            size = (data[opt + 3] << 8) | data[opt + 4]
            limit = udp_limit(size, udp_cap)
            before, after = head + data[end : opt + 3], data[opt + 5 :]
            exact = before + limit.to_bytes(2, "big") + after
            universal = before + b"\0\0" + after
            aliasable = size == limit or size in COMMON_SIZES
    return Folded(universal, exact, end, aliasable, lowered, ecs)


def cased(table: OrderedDict[bytes, Entry], data: bytes) -> bytes | None:
    """The reply for a query whose name is not in lower case (0x20), from the entry
    kept under its lowered bytes, with the query's own spelling of the question;
    None when there is none (the caller goes on to fold the query)."""
    end = data.find(b"\0", _HEADER)
    if end < 0:
        return None
    name = data[_HEADER:end]
    lower = name.lower()
    if lower == name:
        return None
    key = data[2:_HEADER] + lower + data[end:]
    entry = table.get(key)
    if entry.__class__ is not bytes:
        return None
    table.move_to_end(key)
    stored: bytes = entry
    # Stored replies lack the 2-byte ID: the question's name sits at [10:end - 2].
    return data[:2] + stored[:10] + name + stored[end - 2 :]


def ecs_address_length(data: bytes, rdata: int) -> int:
    """The address length of a well-formed ECS option that is the OPT's only option
    (then it ends the query), else 0. Well-formed as RFC 7871 6 says, or the full
    path must see the query (it answers FORMERR)."""
    length = len(data) - rdata  # the OPT's data runs to the end, and is this one option
    if length < 8 or data[rdata - 2 : rdata + 4] != (
        length.to_bytes(2, "big") + b"\0\x08" + (length - 4).to_bytes(2, "big")
    ):
        return 0
    family, source, scope = data[rdata + 5], data[rdata + 6], data[rdata + 7]
    n = len(data) - rdata - 8
    if data[rdata + 4] != 0 or family not in (1, 2) or scope != 0 or source > (32 if family == 1 else 128):
        return 0
    if n != (source + 7) // 8 or n == 0 or data[-1] & (0xFF >> (source % 8 or 8)):
        return 0
    return n


class Dependents:
    """Which keys of one table hold answers that a pool's decision shaped, both
    ways round, so a health change drops exactly those (and an evicted key leaves
    no trace behind)."""

    __slots__ = ("by_pool", "of_key")

    def __init__(self) -> None:
        self.by_pool: dict[str, set[bytes]] = {}
        self.of_key: dict[bytes, tuple[str, ...]] = {}

    def add(self, key: bytes, pools: tuple[str, ...]) -> None:
        self.of_key[key] = pools
        for pool in pools:
            keys = self.by_pool.get(pool)
            if keys is None:
                keys = self.by_pool[pool] = set()
            keys.add(key)

    def forget(self, key: bytes) -> None:
        pools = self.of_key.pop(key, None)
        if pools:
            for pool in pools:
                keys = self.by_pool.get(pool)
                if keys is not None:  # None while `invalidate` walks that pool's keys
                    keys.discard(key)


class AnswerCache:
    """UDP and TCP replies (they differ: truncation) in two LRU tables sharing one
    byte budget. Answers that pool decisions shaped are indexed by pool: a new
    health snapshot drops only those whose decision changed (`invalidate`), and
    static answers outlive any flap storm."""

    __slots__ = (
        "budget",
        "client_keys",
        "deps",
        "evictions",
        "invalidated",
        "subnet_keys",
        "tcp",
        "udp",
        "used",
    )

    def __init__(self, budget: int = DEFAULT_SIZE) -> None:
        self.udp: OrderedDict[bytes, Entry] = OrderedDict()
        self.tcp: OrderedDict[bytes, Entry] = OrderedDict()
        self.deps = {True: Dependents(), False: Dependents()}  # by transport, as the tables
        self.client_keys: dict[str, int] = {}  # source address -> topology key
        self.subnet_keys: dict[bytes, int] = {}  # ECS family + address bytes -> decision key
        self.budget = budget
        self.used = 0
        self.evictions = 0
        self.invalidated = 0  # entries dropped because a pool's decision changed

    def table(self, udp: bool) -> OrderedDict[bytes, Entry]:
        return self.udp if udp else self.tcp

    def depend(self, udp: bool, key: bytes, pools: tuple[str, ...]) -> None:
        """The entry under `key` holds answers drawn from `pools`."""
        self.deps[udp].add(key, pools)

    def alias(self, udp: bool, key: bytes, of: bytes, value: Entry) -> None:
        """Keep `value`, found under `of`, under `key` too, with the same dependencies."""
        table = self.table(udp)
        self.put(table, key, value)
        deps = self.deps[udp]
        pools = deps.of_key.get(of)
        if pools:
            deps.add(key, pools)

    def invalidate(self, pools: set[str] | frozenset[str]) -> int:
        """Drop every answer that depends on one of `pools`; returns how many."""
        dropped = 0
        for udp, deps in self.deps.items():
            table = self.table(udp)
            for pool in pools:
                for key in deps.by_pool.pop(pool, ()):
                    deps.forget(key)
                    value = table.pop(key, None)
                    if value is not None:
                        self.used -= len(key) + ENTRY_OVERHEAD + payload(value)
                        dropped += 1
        self.invalidated += dropped
        return dropped

    def put(self, table: OrderedDict[bytes, Entry], key: bytes, value: Entry) -> None:
        old = table.pop(key, None)
        if old is not None:
            self.used -= len(key) + ENTRY_OVERHEAD + payload(old)
        table[key] = value
        self.grew(len(key) + ENTRY_OVERHEAD + payload(value))

    def grew(self, size: int) -> None:
        """Account for `size` more bytes, then evict the least recently used
        entries (from the bigger table first) until within budget."""
        self.used += size
        udp, tcp = self.udp, self.tcp
        while self.used > self.budget and (udp or tcp):
            table = udp if len(udp) >= len(tcp) else tcp
            key, value = table.popitem(last=False)
            self.used -= len(key) + ENTRY_OVERHEAD + payload(value)
            self.evictions += 1
            if key in self.deps[table is udp].of_key:
                self.deps[table is udp].forget(key)

    def entries(self) -> int:
        return len(self.udp) + len(self.tcp)
