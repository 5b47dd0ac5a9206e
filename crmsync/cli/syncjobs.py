"""``crmsync sync-jobs``: queue a backfill or reconciliation, follow it, cancel it.

``crmsync backfill`` / ``reconcile`` run one here and now; these queue one for the
outbound service's runner, exactly as ``POST /v1/sync-jobs`` does.
"""

from __future__ import annotations

import argparse

from crmsync.application.models import SyncJobCreate, SyncJobQuery
from crmsync.cli import admin_common as cli

KINDS = ("backfill", "reconcile", "full_reconcile")
COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "connection=connection_id",
    "kind",
    "status",
    "seen=records_seen",
    "changed=records_changed",
    "created=created_at",
)


@cli.command
def _start(args: argparse.Namespace) -> int:
    types = args.entity_types.split(",") if args.entity_types else None
    body = cli.body_from(SyncJobCreate, args, entity_types=types)
    return cli.emit(cli.call(args, "createSyncJob", body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(sub, "sync-jobs", "queued backfills and reconciliations")
    start = cli.add_action(actions, "start", "queue a run for the outbound service", _start)
    start.add_argument(
        "--connection", required=True, type=cli.connection_arg, help="id or TENANT/NAME"
    )
    start.add_argument(
        "--kind", required=True, choices=KINDS, help="everything, or what changed (full: deletes)"
    )
    start.add_argument("--entity-types", help="comma-separated (default: what it syncs)")
    start.add_argument("--modified-since", help="reconcile: ISO 8601 time with offset")
    list_ = cli.add_list_action(actions, "newest first", "listSyncJobs", SyncJobQuery, COLUMNS)
    list_.add_argument("--connection", type=cli.connection_arg, help="id or TENANT/NAME")
    list_.add_argument(
        "--status",
        choices=("pending", "running", "succeeded", "failed", "cancelled"),
        help="only runs in this state",
    )
    list_.add_argument("--kind", choices=KINDS, help="only runs of this kind")
    cli.add_id_action(actions, "show", "a run's progress", "getSyncJob", id_help="sync job id")
    cli.add_id_action(
        actions,
        "cancel",
        "cancel a pending run, ask a running one to stop",
        "cancelSyncJob",
        id_help="sync job id",
    )
