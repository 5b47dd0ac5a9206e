"""``crmsync sync-jobs``: queue a backfill or reconciliation, follow it, cancel it.

``crmsync backfill`` / ``reconcile`` run one here and now; these queue one for the
outbound service's runner, exactly as ``POST /v1/sync-jobs`` does.
"""

from __future__ import annotations

import argparse

from crmsync.application import syncjobs
from crmsync.application.models import SyncJobCreate, SyncJobQuery
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_group,
    add_id_action,
    add_list_action,
    command,
    emit,
    model,
    run,
    uuid_arg,
)

KINDS = ("backfill", "reconcile", "full_reconcile")
COLUMNS: list[Column] = [
    ("id", lambda j: j.id),
    ("connection", lambda j: j.connection_id),
    ("kind", lambda j: j.kind),
    ("status", lambda j: j.status),
    ("seen", lambda j: j.records_seen),
    ("changed", lambda j: j.records_changed),
    ("created", lambda j: j.created_at),
]


@command
def _start(args: argparse.Namespace) -> int:
    body = model(
        SyncJobCreate,
        connection=args.connection,
        kind=args.kind,
        entity_types=args.entity_types.split(",") if args.entity_types else None,
        modified_since=args.modified_since,
    )
    return emit(run(args, lambda c, ctx: syncjobs.create(c, ctx, body)), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "sync-jobs", "queued backfills and reconciliations")
    start = actions.add_parser("start", help="queue a run for the outbound service")
    add_common(start)
    start.add_argument("--connection", required=True, type=uuid_arg)
    start.add_argument("--kind", required=True, choices=KINDS)
    start.add_argument("--entity-types", help="comma-separated (default: what it syncs)")
    start.add_argument("--modified-since", help="reconcile: ISO 8601 time with offset")
    start.set_defaults(handler=_start)
    list_ = add_list_action(actions, "newest first", syncjobs.list_, SyncJobQuery, COLUMNS)
    list_.add_argument("--connection", type=uuid_arg)
    list_.add_argument(
        "--status", choices=("pending", "running", "succeeded", "failed", "cancelled")
    )
    list_.add_argument("--kind", choices=KINDS)
    add_id_action(actions, "show", "a run's progress", syncjobs.get)
    add_id_action(
        actions, "cancel", "cancel a pending run, ask a running one to stop", syncjobs.cancel
    )
