"""``crmsync conflicts``: conflicts parked by the manual policy, and their resolution."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from crmsync.application import conflicts
from crmsync.application.models import ConflictQuery, ConflictResolve
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_group,
    add_id_action,
    add_list_action,
    command,
    emit,
    json_arg,
    model,
    run,
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
    now = datetime.now(UTC)
    return emit(
        run(args, lambda c, ctx: conflicts.resolve(c, ctx, args.id, body, now=now)), args.json
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "conflicts", "conflicting field values parked for an operator")
    list_ = add_list_action(actions, "oldest first", conflicts.list_, ConflictQuery, COLUMNS)
    list_.add_argument("--state", choices=("open", "resolved", "all"))
    list_.add_argument("--entity-type", choices=("customer", "job", "invoice", "payment"))
    list_.add_argument("--entity-id", type=uuid_arg)
    add_id_action(actions, "show", "one conflict", conflicts.get)
    resolve = actions.add_parser("resolve", help="keep the current, the incoming or a value")
    add_common(resolve)
    resolve.add_argument("id", type=uuid_arg)
    resolve.add_argument("--choose", required=True, choices=("current", "incoming", "value"))
    resolve.add_argument("--value", help="--choose value: the value, as JSON")
    resolve.set_defaults(handler=_resolve)
