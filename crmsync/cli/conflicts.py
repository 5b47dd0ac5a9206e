"""``crmsync conflicts``: conflicts parked by the manual policy, and their resolution."""

from __future__ import annotations

import argparse

from crmsync.application.models import ConflictQuery, ConflictResolve
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_id_action,
    call,
    command,
    emit,
    json_arg,
    list_command,
    model,
    uuid_arg,
)

COLUMNS: list[Column] = [
    ("id", lambda c: c.id),
    ("entity", lambda c: f"{c.entity_type}:{c.entity_id}"),
    ("field", lambda c: c.field),
    ("current", lambda c: c.current_value),
    ("incoming", lambda c: c.incoming_value),
    ("created", lambda c: c.created_at),
]


@command
def _resolve(args: argparse.Namespace) -> int:
    body = model(ConflictResolve, choose=args.choose, value=json_arg(args.value, "--value"))
    return emit(call(args, "resolveConflict", conflict_id=args.id, body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("conflicts", help="conflicting field values parked for an operator")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    list_ = actions.add_parser("list", help="oldest first")
    add_common(list_, page=True)
    list_.add_argument("--state", choices=("open", "resolved", "all"), help="default open")
    list_.add_argument(
        "--entity-type",
        choices=("customer", "job", "invoice", "payment"),
        help="only conflicts on this kind of record",
    )
    list_.add_argument("--entity-id", type=uuid_arg, help="only this record's conflicts")
    list_.set_defaults(handler=list_command("listConflicts", ConflictQuery, COLUMNS))
    add_id_action(actions, "show", "one conflict", "getConflict", id_help="conflict id")
    resolve = actions.add_parser("resolve", help="keep the current, the incoming or a value")
    add_common(resolve)
    resolve.add_argument("id", type=uuid_arg, help="conflict id")
    resolve.add_argument(
        "--choose",
        required=True,
        choices=("current", "incoming", "value"),
        help="keep the record's value, take the incoming one, or give --value",
    )
    resolve.add_argument("--value", help="--choose value: the value, as JSON")
    resolve.set_defaults(handler=_resolve)
