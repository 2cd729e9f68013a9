"""The commands that work on this host alone: check, export-zone, serve, demo."""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from geodns import __version__
from geodns.cli.codes import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from geodns.config import DEFAULT_CONFIG, load
from geodns.config.advice import advice
from geodns.demo import run_demo
from geodns.dns.zonetext import zone_text
from geodns.eventloop import uvloop_run
from geodns.health.capacity import capacity_warnings, probe_load
from geodns.serving import geo_lookup
from geodns.startup import with_overrides
from geodns.steering.explain import geo_line
from geodns.steering.geochoice import geo_choice
from geodns.steering.policy import AllMembers

log = logging.getLogger("geodns")

EXAMPLE = Path(__file__).resolve().parent.parent / "example"  # shipped as package data


def cmd_demo(args: argparse.Namespace) -> int:
    path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else _example_copy())
    log.info("geodns %s demo starting: pid %d, config %s", __version__, os.getpid(), path.resolve())
    config = with_overrides(load(path), args.dns_listen, args.http_listen)
    try:
        uvloop_run(run_demo(config))
    except OSError as exc:
        log.error("cannot start the demo: %s", exc)
        return EXIT_FAILURE
    return EXIT_OK


def _example_copy() -> Path:
    """The example shipped inside the package, copied to a folder of its own (outside a
    checkout, e.g. from a wheel): its state_dir (../var) then lands beside the copy."""
    where = Path(tempfile.mkdtemp(prefix="geodns-demo-"))
    shutil.copytree(EXAMPLE, where / "config")
    log.info("no %s here: running the example shipped with geodns, copied to %s", DEFAULT_CONFIG, where)
    return where / "config" / "geodns.yaml"


def cmd_geoip(args: argparse.Namespace) -> int:
    """What the configured GeoIP databases say of an address, and the rule it falls under."""
    config = load(args.config)
    try:
        address = ipaddress.ip_address(args.address)
    except ValueError:
        print(f"geodns: {args.address!r} is not an IP address", file=sys.stderr)
        return EXIT_CONFIG
    if config.geoip is None:
        print(f"geodns: {args.config} has no geoip.database", file=sys.stderr)
        return EXIT_CONFIG
    choice = geo_choice(config, address, geo_lookup(config))
    info = choice.info.to_json() if choice.info is not None else None
    if args.json:
        doc: dict[str, Any] = {"address": str(address), "database": info, "scope": choice.scope}
        doc |= {"rule": choice.rule.describe() if choice.rule else None, "order": list(choice.order)}
        doc["distances_km"] = {name: round(km) for name, km in choice.distances}
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    print(f"{address}: {geo_line(info) if info is not None else 'matched a subnet rule (no lookup needed)'}")
    for name, km in choice.distances:
        print(f"  {name}: {km:,.0f} km")
    rule = choice.rule.describe() if choice.rule else "none (each geo pool's own order)"
    print(f"rule: {rule}; the same for every address in /{choice.scope} (ECS scope)")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from geodns.config.schema import main_schema, zone_schema  # noqa: PLC0415 - rare

    doc = zone_schema() if args.zone else main_schema()
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    config = load(args.config)
    records = sum(len(node) for z in config.zones.zones.values() for node in z.nodes.values())
    wanted = probe_load(config)
    print(
        f"{args.config}: OK ({len(config.zones.zones)} zone(s), {records} record set(s), "
        f"{len(config.pools)} pool(s), {len(config.checks)} check(s), {wanted.rate:,.0f} probes/s)"
    )
    for warning in [*advice(config), *capacity_warnings(config)]:
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
