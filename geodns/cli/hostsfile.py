"""`geodns hosts`: the healthy answers of chosen names as a local resolution file
(/etc/hosts, a dnsmasq or an Unbound snippet), so applications resolve their
databases without a DNS round trip and still follow failover.

One-shot, or `--watch`: long polls the daemon's /v1/answers (a change arrives
within a second) and rewrites the file atomically (temp file, fsync, rename) only
when its content changes. When the daemon cannot be reached the last good file
stays as it is, and that is said. A name that resolves to nothing now (a pool
with `fallback: empty` and every member down) keeps its last addresses: the file
never loses a name because a pool failed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from geodns import durable
from geodns.api.apiclient import ApiError, call
from geodns.cli.codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from geodns.timefmt import iso

log = logging.getLogger("geodns.hosts")

FORMATS = ("hosts", "dnsmasq", "unbound")
POLL = 10  # seconds a long poll may wait on the daemon (its listener's limit is 15)


def render(doc: dict[str, Any], fmt: str, source: str, kept: dict[str, list[str]]) -> str:
    """The file for `doc` (/v1/answers); `kept` holds names answered from their last
    addresses because they resolve to nothing now."""
    names = doc["names"]
    failing = sorted({pool for found in names.values() for pool in found.get("failing_open", [])})
    lines = [
        f"# Written by geodns hosts from {source} (answers {doc['token']}) at {iso(time.time())}.",
        "# Rewritten on every change: edit the pools, not this file.",
    ]
    if failing:
        lines.append(f"# FAILING OPEN (every member down, answering the fallback): {', '.join(failing)}")
    for name in sorted(kept):
        lines.append(f"# {name} resolves to nothing now: its last addresses are kept")
    for name, found in names.items():
        host = name.rstrip(".")
        addresses = kept.get(name) or [*found["A"], *found["AAAA"]]
        ttl = found.get("ttl") or 60
        for address in addresses:
            if fmt == "hosts":
                lines.append(f"{address}\t{host}")
            elif fmt == "dnsmasq":
                lines.append(f"host-record={host},{address}")
            else:
                kind = "AAAA" if ":" in address else "A"
                lines.append(f'local-data: "{host}. {ttl} IN {kind} {address}"')
    return "\n".join(lines) + "\n"


def _addresses(found: dict[str, Any]) -> list[str]:
    return [*found.get("A", []), *found.get("AAAA", [])]


class _Follower:
    """The state of one `geodns hosts` run: each name's last addresses, the file's
    last content, the daemon's answers token."""

    def __init__(self, args: argparse.Namespace, base: str, token: str | None) -> None:
        self.args, self.base, self.token = args, base, token
        self.last: dict[str, list[str]] = {}  # each name's last non-empty addresses
        self.written: str | None = None
        self.answers: str | None = None
        self.trouble: str | None = None

    def fetch(self) -> dict[str, Any]:
        params = [("name", n) for n in self.args.names] + [("client", self.args.client)]
        if self.answers is not None:
            params += [("wait", self.answers), ("timeout", str(POLL))]
        path = "/v1/answers?" + urllib.parse.urlencode(params)
        doc: dict[str, Any] = call(self.base, "GET", path, token=self.token, timeout=POLL + 5)
        return doc

    def unreachable(self, exc: ApiError) -> None:
        if str(exc) != self.trouble:
            self.trouble = str(exc)
            still = f"; {self.args.output} keeps its last good content" if self.written is not None else ""
            log.warning("%s%s (retrying)", exc, still)

    def kept(self, doc: dict[str, Any]) -> tuple[dict[str, list[str]], list[str]]:
        """Names answered from their last addresses, and names with none at all."""
        kept: dict[str, list[str]] = {}
        for name, found in doc["names"].items():
            if _addresses(found):
                self.last[name] = _addresses(found)
            elif name in self.last:
                kept[name] = self.last[name]
        return kept, [n for n in doc["names"] if n not in self.last]

    def write(self, doc: dict[str, Any], kept: dict[str, list[str]]) -> None:
        text = render(doc, self.args.format, self.base, kept)
        body = text.split("\n", 1)[1]  # without the line with the time
        if self.args.output is None:
            sys.stdout.write(text)
        elif self.written != body:
            durable.write_file(self.args.output, text.encode(), mode=0o644, private=False)
            self.written = body
            summary = "; ".join(f"{n.rstrip('.')} -> {', '.join(self.last[n])}" for n in doc["names"])
            log.warning("wrote %s: %s", self.args.output, summary)


def cmd_hosts(args: argparse.Namespace, base: str, token: str | None) -> int:
    if args.watch and args.output is None:
        print("geodns: hosts --watch needs --output FILE", file=sys.stderr)
        return EXIT_CONFIG
    if args.watch:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_OK))
    follower = _Follower(args, base, token)
    backoff = 1.0
    while True:
        try:
            doc = follower.fetch()
        except ApiError as exc:
            if not args.watch:
                raise
            follower.unreachable(exc)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            continue
        if follower.trouble is not None:
            log.warning("geodns reachable again")
            follower.trouble, backoff = None, 1.0
        errors = [f"{n}: {f['error']}" for n, f in doc["names"].items() if "error" in f]
        if errors:
            print("geodns: " + "; ".join(errors), file=sys.stderr)
            return EXIT_CONFIG
        kept, missing = follower.kept(doc)
        for name in missing:
            print(f"geodns: {name} resolves to no address now: no file without it", file=sys.stderr)
        if missing and not args.watch:
            return EXIT_FAILURE
        if not missing:
            follower.write(doc, kept)
        if not args.watch:
            return EXIT_OK
        follower.answers = doc["token"]


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    hosts = sub.add_parser(
        "hosts",
        parents=parents,
        help="write the healthy answers of names as a hosts file (or dnsmasq/unbound), once or --watch",
    )
    hosts.add_argument("names", nargs="+", metavar="NAME")
    hosts.add_argument("--output", "-o", type=Path, help="the file to write atomically (default: print)")
    hosts.add_argument("--watch", action="store_true", help="follow the daemon: rewrite on every change")
    hosts.add_argument("--format", choices=FORMATS, default="hosts")
    hosts.add_argument("--client", default="127.0.0.1", help="answer as for this client (geo pools)")
    assert isinstance(hosts, argparse.ArgumentParser)
    return hosts
