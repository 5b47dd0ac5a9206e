"""``crmsync freeze-windows``: scheduled pauses of one connection or the whole tenant
(``/v1/freeze-windows``), e.g. "read-only on the wedding day": add, list, show, delete (a
window not started is cancelled; one in force ends now)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from crmsync.application import pauses
from crmsync.application.models import FreezeWindowCreate, FreezeWindowQuery
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_group,
    add_id_action,
    command,
    emit,
    model,
    query_from,
    run,
    uuid_arg,
)

COLUMNS: list[Column] = [
    ("id", lambda w: w.id),
    ("connection", lambda w: w.connection_id or "all"),
    ("in", lambda w: w.inbound),
    ("out", lambda w: w.outbound),
    ("starts", lambda w: w.starts_at),
    ("ends", lambda w: w.ends_at),
    ("reason", lambda w: w.reason),
]


@command
def _add(args: argparse.Namespace) -> int:
    body = model(
        FreezeWindowCreate,
        connection=args.connection,
        direction=args.direction,
        starts_at=args.starts_at,
        ends_at=args.ends_at,
        reason=args.reason,
    )
    now = datetime.now(UTC)
    return emit(run(args, lambda c, ctx: pauses.create_window(c, ctx, body, now=now)), args.json)


@command
def _list(args: argparse.Namespace) -> int:
    query = query_from(FreezeWindowQuery, args, include_past="all")
    now = datetime.now(UTC)
    page = run(args, lambda c, ctx: pauses.list_windows(c, ctx, query, now=now))
    return emit(page, args.json, COLUMNS)


@command
def _delete(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    return emit(run(args, lambda c, ctx: pauses.delete_window(c, ctx, args.id, now=now)), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "freeze-windows", "scheduled pauses, in and/or out")
    add = actions.add_parser("add", help="schedule a window")
    add_common(add)
    add.add_argument("--connection", type=uuid_arg, help="one connection (default: all)")
    add.add_argument("--direction", choices=("in", "out", "both"), help="default both")
    add.add_argument("--starts-at", required=True, help="ISO 8601 time with offset")
    add.add_argument("--ends-at", required=True, help="ISO 8601 time with offset")
    add.add_argument("--reason")
    add.set_defaults(handler=_add)
    list_ = actions.add_parser("list", help="windows not over yet")
    add_common(list_, page=True)
    list_.add_argument("--connection", type=uuid_arg)
    list_.add_argument("--all", action="store_true", help="include windows that are over")
    list_.set_defaults(handler=_list)
    add_id_action(actions, "show", "one window", pauses.get_window)
    delete = actions.add_parser("delete", help="cancel a window, or end one in force now")
    add_common(delete)
    delete.add_argument("id", type=uuid_arg)
    delete.set_defaults(handler=_delete)
