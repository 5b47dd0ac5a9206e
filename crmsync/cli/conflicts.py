"""``crmsync conflicts``: conflicts parked by the manual policy, and their resolution."""

from __future__ import annotations

import argparse

from crmsync.application.models import ConflictQuery, ConflictResolve
from crmsync.cli import admin_common as cli

COLUMNS: list[cli.Column] = cli.columns(
    "id",
    ("entity", lambda c: f"{c.entity_type}:{c.entity_id}"),
    "field",
    "current=current_value",
    "incoming=incoming_value",
    "created=created_at",
)


@cli.command
def _resolve(args: argparse.Namespace) -> int:
    body = cli.model(ConflictResolve, choose=args.choose, value=cli.json_arg(args.value, "--value"))
    return cli.emit(cli.call(args, "resolveConflict", conflict_id=args.id, body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(sub, "conflicts", "conflicting field values parked for an operator")
    list_ = cli.add_list_action(actions, "oldest first", "listConflicts", ConflictQuery, COLUMNS)
    list_.add_argument("--state", choices=("open", "resolved", "all"), help="default open")
    list_.add_argument(
        "--entity-type",
        choices=("customer", "job", "invoice", "payment"),
        help="only conflicts on this kind of record",
    )
    list_.add_argument("--entity-id", type=cli.uuid_arg, help="only this record's conflicts")
    cli.add_id_action(actions, "show", "one conflict", "getConflict", id_help="conflict id")
    resolve = cli.add_action(
        actions, "resolve", "keep the current, the incoming or a value", _resolve
    )
    resolve.add_argument("id", type=cli.uuid_arg, help="conflict id")
    resolve.add_argument(
        "--choose",
        required=True,
        choices=("current", "incoming", "value"),
        help="keep the record's value, take the incoming one, or give --value",
    )
    resolve.add_argument("--value", help="--choose value: the value, as JSON")
