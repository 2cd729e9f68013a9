"""The commands that talk to a running daemon over its HTTP API."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from geodns.api.apiclient import api_url, call, render_status
from geodns.api.tokens import load_api_token, load_read_token
from geodns.cli import hostsfile
from geodns.cli.codes import EXIT_OK
from geodns.config import DEFAULT_CONFIG, load
from geodns.health.health import Health, Status, probe_keys
from geodns.health.overrides import Override, check_target, parse_target
from geodns.health.snapshot import HealthSnapshot
from geodns.serving import geo_lookup
from geodns.steering.explain import explain, render
from geodns.timefmt import iso

DEFAULT_API = "http://127.0.0.1:8053"


def api_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        help=f"take the API address and token from it (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "--api", help=f"the daemon's HTTP address (default: server.http_listen, else {DEFAULT_API})"
    )


def _api(args: argparse.Namespace) -> tuple[str, str | None]:
    """The API base URL and the bearer token (GEODNS_API_TOKEN or server.api_token_file).
    Without -c, the config in the current folder when there is one; without either,
    the default listener on loopback (run from anywhere on the daemon's host)."""
    path: Path | None = args.config
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    config = load(path) if path is not None and (args.api is None or path.exists()) else None
    token = load_api_token(config) if config is not None else os.environ.get("GEODNS_API_TOKEN")
    if token is None:  # reads only, then: the read token opens them
        token = load_read_token(config) if config is not None else os.environ.get("GEODNS_API_READ_TOKEN")
    if config is None and args.api is None:
        return DEFAULT_API, token
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
        "by": _who(),
    }
    o = call(base, "POST", "/v1/overrides", body, token=token)
    until = f" until {iso(o['expires'])}" if o.get("expires") else ""
    print(f"{o['target']} forced {o['state']}{until}: {o['reason'] or '(no reason given)'}")
    _say_lag(o)
    return EXIT_OK


def _who() -> str:
    """user@host, shown beside the drain on the status page and in the logs."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's random uid)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


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


def cmd_hosts(args: argparse.Namespace) -> int:
    base, token = _api(args)
    return hostsfile.cmd_hosts(args, base, token)


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
        snapshot = HealthSnapshot(0, states, tuple(overrides))
        doc = explain(config, snapshot, args.name, args.type, args.client, args.ecs, geo_lookup(config))
        doc["offline"] = True  # said in the output: no probe ran
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
