"""`geodns plan` and `geodns sync --once`: Route53 from the command line.

boto3 is imported here only when one of them runs (it costs half a second)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from geodns.cli.codes import EXIT_FAILURE, EXIT_OK, EXIT_PENDING
from geodns.config import load
from geodns.errors import GeoDnsError
from geodns.health.snapshot import HealthSnapshot

if TYPE_CHECKING:
    from geodns.route53.sync import Reconciler


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
