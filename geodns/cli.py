"""Command line: `geodns check`, `geodns serve`. Exit codes: 0 ok, 1 runtime
failure (e.g. a port in use), 2 invalid configuration or usage."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geodns import __version__
from geodns.api.apiclient import api_url, call, render_status
from geodns.api.tokens import load_api_token, load_read_token
from geodns.config import DEFAULT_CONFIG, load
from geodns.config.fields import Invalid
from geodns.config.model import ListenAddress
from geodns.config.parse import to_listen
from geodns.daemon import with_overrides
from geodns.demo import run_demo
from geodns.dns.zonetext import zone_text
from geodns.errors import ConfigError, GeoDnsError
from geodns.eventloop import uvloop_run
from geodns.health.capacity import capacity_warnings, probe_load
from geodns.health.health import Health, Status, probe_keys
from geodns.health.overrides import Override, OverrideError, check_target, parse_target
from geodns.health.snapshot import HealthSnapshot
from geodns.steering.explain import explain, render
from geodns.steering.policy import AllMembers
from geodns.timefmt import iso

if TYPE_CHECKING:
    from geodns.route53.sync import Reconciler

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_PENDING = 2  # geodns plan: changes pending

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

    status = sub.add_parser("status", help="show every member's state from the running daemon")
    _api_args(status)
    status.add_argument("--json", action="store_true", help="print the raw /v1/status document")

    drain = sub.add_parser("drain", help="force a datacenter, pool or member down (or --up)")
    _api_args(drain)
    drain.add_argument("target", help="dc=NAME, pool=NAME or member=ADDRESS")
    drain.add_argument("--reason", default="", help="shown in logs, status and the status page")
    drain.add_argument("--for", dest="duration", help="expire after this long, e.g. 30m, 2h")
    drain.add_argument("--up", action="store_true", help="force up instead of down")

    undrain = sub.add_parser("undrain", help="remove the override on a target")
    _api_args(undrain)
    undrain.add_argument("target", help="dc=NAME, pool=NAME or member=ADDRESS")
    ack = sub.add_parser("ack", help="acknowledge that saved drains could not all be read at start-up")
    _api_args(ack)

    cluster = sub.add_parser("cluster", help="show the peers, who is isolated, the governor")
    _api_args(cluster)
    cluster.add_argument("--json", action="store_true", help="print the raw /v1/cluster document")

    release = sub.add_parser("release", help="end the blast-radius governor's hold: the held downs apply")
    _api_args(release)

    expl = sub.add_parser("explain", help="why a name answers what it answers")
    _api_args(expl)
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

    plan = sub.add_parser("plan", help="show the Route53 changes a sync would make (exit 2 when any)")
    plan.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    plan.add_argument("--force", action="store_true", help="plan as `sync --force` would (no safety hold)")

    sync = sub.add_parser("sync", help="push health-driven weights into Route53")
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

    demo = sub.add_parser("demo", help="serve the example with simulated backends in its datacenters")
    demo.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    demo.add_argument("--dns-listen", type=_listen_arg, action="append", metavar="HOST:PORT")
    demo.add_argument("--http-listen", type=_listen_arg, metavar="HOST:PORT")

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


def _api_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--api", help="the daemon's HTTP address (default: server.http_listen)")


def _api(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API base URL and the bearer token (GEODNS_API_TOKEN or server.api_token_file)."""
    config = load(args.config) if args.api is None or args.config.exists() else None
    token = load_api_token(config) if config is not None else os.environ.get("GEODNS_API_TOKEN")
    if token is None:  # reads only, then: the read token opens them
        token = load_read_token(config) if config is not None else os.environ.get("GEODNS_API_READ_TOKEN")
    return api_url(config, args.api), token


def cmd_status(args: argparse.Namespace) -> int:
    base, token = _api(args)
    doc = call(base, "GET", "/v1/status", token=token)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else render_status(doc))
    return EXIT_OK


def cmd_drain(args: argparse.Namespace) -> int:
    base, token = _api(args)
    body = {
        "target": args.target,
        "state": "up" if args.up else "down",
        "reason": args.reason,
        "for": args.duration,
    }
    o = call(base, "POST", "/v1/overrides", body, token=token)
    until = f" until {iso(o['expires'])}" if o.get("expires") else ""
    print(f"{o['target']} forced {o['state']}{until}: {o['reason'] or '(no reason given)'}")
    _say_lag(o)
    return EXIT_OK


def _say_lag(response: dict[str, Any]) -> None:
    """Applied and saved, but some DNS worker did not answer with it within a second."""
    if "warning" in response:
        print(f"warning: {response['warning']}", file=sys.stderr)


def cmd_undrain(args: argparse.Namespace) -> int:
    base, token = _api(args)
    gone = call(base, "DELETE", "/v1/overrides/" + urllib.parse.quote(args.target), token=token)
    for o in gone["removed"]:
        print(f"removed override {o['target']} (forced {o['state']}: {o['reason']})")
    _say_lag(gone)
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    base, token = _api(args)
    said = call(base, "POST", "/v1/overrides/ack", {}, token=token)["acknowledged"]
    for problem in said:
        print(f"acknowledged: {problem}")
    if not said:
        print("nothing to acknowledge: every saved override was read")
    return EXIT_OK


def cmd_cluster(args: argparse.Namespace) -> int:
    base, token = _api(args)
    doc = call(base, "GET", "/v1/cluster", token=token)
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    where = f" ({doc['datacenter']})" if doc.get("datacenter") else ""
    print(f"instance {doc['name']}{where}, config {doc['config_hash']}")
    if doc.get("partitioned"):
        print("MINORITY PARTITION: no peer heard; answering with the last state the cluster agreed on")
    for peer in doc["peers"]:
        ago = peer["last_heard_seconds_ago"]
        heard = "never heard" if ago is None else f"heard {ago:.1f}s ago"
        state = "counted" if peer["counted"] else f"NOT COUNTED: {peer['problem'] or 'silent'}"
        same = "" if peer["same_config"] in (True, None) else f"; config differs ({peer['config_hash']})"
        print(f"  peer {peer['name']} [{peer['datacenter'] or '?'}] {peer['url']}: {state}, {heard}{same}")
    if doc.get("isolated"):
        print(f"isolated (votes not counted): {', '.join(doc['isolated'])}")
    hold = doc.get("governor")
    if hold:
        print(f"GOVERNOR HOLDING {len(hold['holding'])} target(s) up for {hold['since_seconds']:.0f}s:")
        print("  " + ", ".join(hold["holding"]) + "  (geodns release lets their downs apply)")
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    base, token = _api(args)
    call(base, "POST", "/v1/cluster/release", {}, token=token)
    print("released: the governor's held downs apply now")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    if args.offline or args.down:
        config = load(args.config)
        now = time.time()
        overrides = []
        for target in args.down:
            kind, name = parse_target(target)
            check_target(config, kind, name)
            overrides.append(Override(kind, name, Status.DOWN, "what-if (--down)", now))
        states = {key: Health(status=Status.UP) for key in probe_keys(config)}
        doc = explain(
            config, HealthSnapshot(0, states, tuple(overrides)), args.name, args.type, args.client, args.ecs
        )
    else:
        base, token = _api(args)
        query = urllib.parse.urlencode(
            {
                k: v
                for k, v in {
                    "name": args.name,
                    "type": args.type,
                    "client": args.client,
                    "ecs": args.ecs,
                }.items()
                if v
            }
        )
        doc = call(base, "GET", "/v1/explain?" + query, token=token)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.json else render(doc))
    return EXIT_OK


def _route53_reconciler(config_path: Path) -> tuple[Reconciler, HealthSnapshot]:
    from geodns.route53.client import Route53Client  # noqa: PLC0415 - boto3 is slow to import
    from geodns.route53.sync import Reconciler, one_shot_snapshot  # noqa: PLC0415

    config = load(config_path)
    if config.route53 is None or not config.route53.records:
        raise GeoDnsError(f"{config_path}: no route53.records to sync")
    snapshot = asyncio.run(one_shot_snapshot(config))
    return Reconciler(config, Route53Client(config.route53)), snapshot


def cmd_plan(args: argparse.Namespace) -> int:
    """Exit 0 in sync, 2 with changes pending (like terraform plan -detailed-exitcode), 1 on errors."""
    reconciler, snapshot = _route53_reconciler(args.config)
    plan, _desired = reconciler.plan(snapshot, force=args.force)
    for change in plan.changes:
        print(change.line())
    for change in plan.refused:
        print(change.line() + "  [held back by max_change_fraction]")
    for note in plan.notes:
        print(f"note: {note}")
    for conflict in plan.conflicts:
        print(f"error: {conflict}", file=sys.stderr)
    if plan.conflicts:
        return EXIT_FAILURE
    if plan.in_sync:
        print(f"in sync: {plan.owned} record set(s) owned, nothing to change")
        return EXIT_OK
    return EXIT_PENDING


def cmd_sync(args: argparse.Namespace) -> int:
    reconciler, snapshot = _route53_reconciler(args.config)
    result = reconciler.reconcile(snapshot, force=args.force)
    for change in result.applied:
        print(change.line())
    for change in result.plan.refused:
        print(change.line() + "  [held back: use --force]")
    if result.insync_seconds:
        print(
            f"applied {len(result.applied)} change(s) in {len(result.insync_seconds)} batch(es); "
            f"INSYNC after {max(result.insync_seconds):.1f}s"
        )
    elif result.ok:
        print("in sync: nothing to change")
    for error in [*result.plan.conflicts, *result.errors]:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_OK if result.ok and not result.plan.refused else EXIT_FAILURE


def cmd_demo(args: argparse.Namespace) -> int:
    config = with_overrides(load(args.config), args.dns_listen, args.http_listen)
    try:
        uvloop_run(run_demo(config))
    except OSError as exc:
        log.error("cannot start the demo: %s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args.config)
    records = sum(len(node) for z in config.zones.zones.values() for node in z.nodes.values())
    wanted = probe_load(config)
    print(
        f"{args.config}: OK ({len(config.zones.zones)} zone(s), {records} record set(s), "
        f"{len(config.pools)} pool(s), {len(config.checks)} check(s), {wanted.rate:,.0f} probes/s)"
    )
    for warning in capacity_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
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
    from geodns.daemon import run  # noqa: PLC0415

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
        commands = {
            "export-zone": cmd_export_zone,
            "status": cmd_status,
            "drain": cmd_drain,
            "undrain": cmd_undrain,
            "ack": cmd_ack,
            "cluster": cmd_cluster,
            "release": cmd_release,
            "explain": cmd_explain,
            "demo": cmd_demo,
            "plan": cmd_plan,
            "sync": cmd_sync,
            "serve": cmd_serve,
        }
        return commands[args.command](args)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_CONFIG
    except OverrideError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except GeoDnsError as exc:
        print(f"geodns: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILURE
