"""Command line. Exit codes (README, "Commands"): 0 ok; 1 something outside
failed (a port in use, the daemon unreachable, the AWS API); 2 what was given is
wrong (an invalid config, a bad target, a refused token). `plan` exits 2 for
"changes pending" and so 1 for every error."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from geodns import __version__
from geodns.cli import hostsfile
from geodns.cli.apicmds import (
    api_args,
    cmd_ack,
    cmd_cluster,
    cmd_drain,
    cmd_explain,
    cmd_hosts,
    cmd_release,
    cmd_status,
    cmd_undrain,
)
from geodns.cli.codes import EXIT_CONFIG, EXIT_FAILURE
from geodns.cli.localcmds import cmd_check, cmd_demo, cmd_export_zone, cmd_geoip, cmd_schema, cmd_serve
from geodns.cli.logs import setup_logging
from geodns.cli.route53cmds import cmd_plan, cmd_sync
from geodns.config import DEFAULT_CONFIG
from geodns.config.fields import Invalid
from geodns.config.model import ListenAddress
from geodns.config.parse import to_listen
from geodns.errors import ConfigError, GeoDnsError
from geodns.health.overrides import OverrideError

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _log_args(parser: argparse.ArgumentParser, level: Any, fmt: Any) -> None:
    parser.add_argument("--log-level", default=level, choices=LOG_LEVELS)
    parser.add_argument(
        "--log-format", default=fmt, choices=["text", "json"], help="json: one object per line (UTC)"
    )


def _listen_arg(text: str) -> ListenAddress:
    try:
        return to_listen(text)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geodns", description="DNS failover across datacenters")
    parser.add_argument("--version", action="version", version=f"geodns {__version__}")
    _log_args(parser, "info", "text")
    # The same options after the subcommand (`geodns serve --log-level debug`): there
    # they default to "not given", so they never reset what was given before it.
    common = argparse.ArgumentParser(add_help=False)
    _log_args(common, argparse.SUPPRESS, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])

    check = add("check", help="validate the configuration and zones, then exit")
    check.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)

    geoip = add("geoip", help="what the GeoIP databases say of an address, and the topology rule it meets")
    geoip.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    geoip.add_argument("address")
    geoip.add_argument("--json", action="store_true")

    schema = add("schema", help="print the JSON Schema of the config file (or, with --zone, of zone files)")
    schema.add_argument("--zone", action="store_true", help="the schema of zone files")

    export = add("export-zone", help="print a zone as an RFC 1035 master file")
    export.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    export.add_argument("origin", help="the zone's origin, e.g. example.com.")

    status = add("status", help="show every member's state from the running daemon")
    api_args(status)
    status.add_argument("--json", action="store_true", help="print the raw /v1/status document")

    drain = add("drain", help="force a datacenter, pool or member down (or --up)")
    api_args(drain)
    drain.add_argument("target", help="dc=NAME, pool=NAME or member=ADDRESS")
    drain.add_argument("--reason", default="", help="shown in logs, status and the status page")
    drain.add_argument("--for", dest="duration", help="expire after this long, e.g. 30m, 2h")
    drain.add_argument("--up", action="store_true", help="force up instead of down")

    undrain = add("undrain", help="remove the override on a target")
    api_args(undrain)
    undrain.add_argument("target", help="dc=NAME, pool=NAME or member=ADDRESS")
    ack = add("ack", help="acknowledge that saved drains could not all be read at start-up")
    api_args(ack)

    cluster = add("cluster", help="show the peers, who is isolated, the governor")
    api_args(cluster)
    cluster.add_argument("--json", action="store_true", help="print the raw /v1/cluster document")

    release = add("release", help="end the blast-radius governor's hold: the held downs apply")
    api_args(release)

    expl = add("explain", help="why a name answers what it answers")
    api_args(expl)
    expl.add_argument("name")
    expl.add_argument("type", nargs="?", default="A")
    expl.add_argument("--client", default="127.0.0.1", help="the asking address (resolver or client)")
    expl.add_argument("--ecs", help="an EDNS Client Subnet, e.g. 203.0.113.0/24")
    expl.add_argument(
        "--down",
        action="append",
        default=[],
        metavar="TARGET",
        help="what-if: treat dc=NAME, pool=NAME or member=ADDRESS as down (implies --offline)",
    )
    expl.add_argument(
        "--offline", action="store_true", help="answer from the config alone, every member up unless --down"
    )
    expl.add_argument("--json", action="store_true")

    hosts = hostsfile.add_parser(sub, [common])
    api_args(hosts)

    plan = add("plan", help="show the Route53 changes a sync would make (exit 2 when any, 1 on any error)")
    plan.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    plan.add_argument("--force", action="store_true", help="plan as `sync --force` would (no safety hold)")

    sync = add("sync", help="push health-driven weights into Route53")
    sync.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    sync.add_argument(
        "--once",
        action="store_true",
        required=True,
        help="one reconcile, then exit (`geodns serve` syncs continuously)",
    )
    sync.add_argument(
        "--force",
        action="store_true",
        help="apply even config-driven creates/deletes beyond route53.max_change_fraction",
    )

    demo = add("demo", help="serve the example with simulated backends in its datacenters")
    demo.add_argument(
        "-c",
        "--config",
        type=Path,
        help=f"default: {DEFAULT_CONFIG} when it exists, else a copy of the example shipped with geodns",
    )
    demo.add_argument("--dns-listen", type=_listen_arg, action="append", metavar="HOST:PORT")
    demo.add_argument("--http-listen", type=_listen_arg, metavar="HOST:PORT")

    serve = add("serve", help="answer DNS for the configured zones")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    return _run(args)


def _failed(args: argparse.Namespace, code: int) -> int:
    """The exit code of an error: for plan, whose 2 means "changes pending", every error is 1."""
    return EXIT_FAILURE if args.command == "plan" else code


def _run(args: argparse.Namespace) -> int:
    try:
        commands = {
            "check": cmd_check,
            "export-zone": cmd_export_zone,
            "status": cmd_status,
            "drain": cmd_drain,
            "undrain": cmd_undrain,
            "ack": cmd_ack,
            "cluster": cmd_cluster,
            "release": cmd_release,
            "explain": cmd_explain,
            "hosts": cmd_hosts,
            "demo": cmd_demo,
            "plan": cmd_plan,
            "sync": cmd_sync,
            "serve": cmd_serve,
            "schema": cmd_schema,
            "geoip": cmd_geoip,
        }
        return commands[args.command](args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) found; nothing was changed.", file=sys.stderr)
        return _failed(args, EXIT_CONFIG)
    except OverrideError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return _failed(args, EXIT_CONFIG)
    except GeoDnsError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return _failed(args, exc.exit_code)
    except KeyboardInterrupt:
        return EXIT_FAILURE
