"""Command line: `geodns check`, `geodns serve`. Exit codes: 0 ok, 1 runtime
failure (e.g. a port in use), 2 invalid configuration or usage."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from geodns import __version__
from geodns.config import DEFAULT_CONFIG, load
from geodns.config.fields import Invalid
from geodns.config.model import ListenAddress
from geodns.config.parse import to_listen
from geodns.errors import ConfigError
from geodns.policy import AllMembers
from geodns.zonetext import zone_text

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

log = logging.getLogger("geodns")


def _listen_arg(text: str) -> ListenAddress:
    try:
        return to_listen(text)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geodns", description="DNS failover across datacenters")
    parser.add_argument("--version", action="version", version=f"geodns {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate the configuration and zones, then exit")
    check.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)

    export = sub.add_parser("export-zone", help="print a zone as an RFC 1035 master file")
    export.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    export.add_argument("origin", help="the zone's origin, e.g. example.com.")

    serve = sub.add_parser("serve", help="answer DNS for the configured zones")
    serve.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    serve.add_argument(
        "--dns-listen",
        type=_listen_arg,
        action="append",
        metavar="HOST:PORT",
        help="UDP+TCP address to answer on (repeatable; replaces server.dns_listen)",
    )
    serve.add_argument(
        "--http-listen",
        type=_listen_arg,
        metavar="HOST:PORT",
        help="address of the HTTP API (replaces server.http_listen)",
    )
    serve.add_argument("--no-uvloop", action="store_true", help="use the standard asyncio loop")
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args.config)
    records = sum(len(node) for z in config.zones.zones.values() for node in z.nodes.values())
    print(
        f"{args.config}: OK ({len(config.zones.zones)} zone(s), {records} record set(s), "
        f"{len(config.pools)} pool(s), {len(config.checks)} check(s))"
    )
    return EXIT_OK


def cmd_export_zone(args: argparse.Namespace) -> int:
    config = load(args.config)
    origin = tuple(label.lower() for label in args.origin.rstrip(".").split(".") if label)
    zone = config.zones.zones.get(origin)
    if zone is None:
        known = ", ".join(sorted(".".join(o) + "." for o in config.zones.zones))
        print(f"no zone {args.origin!r} in {args.config} (zones: {known})", file=sys.stderr)
        return EXIT_CONFIG
    sys.stdout.write(zone_text(zone, AllMembers(config.pools)))
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from geodns.daemon import run  # noqa: PLC0415 - optional/slow import, only when serving

    try:
        run(args.config, args.dns_listen, args.http_listen, use_uvloop=not args.no_uvloop)
    except OSError as exc:
        log.error("cannot serve: %s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "export-zone":
            return cmd_export_zone(args)
        return cmd_serve(args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILURE
