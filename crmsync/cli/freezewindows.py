"""``crmsync freeze-windows``: scheduled pauses of one connection or the whole tenant
(``/v1/freeze-windows``), e.g. "read-only on the wedding day": add, list, show, delete (a
window not started is cancelled; one in force ends now)."""

from __future__ import annotations

import argparse

from crmsync.application.models import FreezeWindowCreate, FreezeWindowQuery
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_group,
    add_id_action,
    add_list_action,
    call,
    command,
    connection_arg,
    emit,
    model,
    optional_connection_id,
)

_ID = "freeze window id"
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
        connection=optional_connection_id(args, args.connection),
        direction=args.direction,
        starts_at=args.starts_at,
        ends_at=args.ends_at,
        reason=args.reason,
    )
    return emit(call(args, "createFreezeWindow", body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "freeze-windows", "scheduled pauses, in and/or out")
    add = actions.add_parser("add", help="schedule a window")
    add_common(add)
    add.add_argument(
        "--connection",
        type=connection_arg,
        help="one connection, id or TENANT/NAME (default: all of the tenant's)",
    )
    add.add_argument("--direction", choices=("in", "out", "both"), help="default both")
    add.add_argument("--starts-at", required=True, help="ISO 8601 time with offset")
    add.add_argument("--ends-at", required=True, help="ISO 8601 time with offset")
    add.add_argument("--reason", help="why, e.g. the wedding day")
    add.set_defaults(handler=_add)
    list_ = add_list_action(
        actions,
        "windows not over yet",
        "listFreezeWindows",
        FreezeWindowQuery,
        COLUMNS,
        include_past="all",
    )
    list_.add_argument("--connection", type=connection_arg, help="id or TENANT/NAME")
    list_.add_argument("--all", action="store_true", help="include windows that are over")
    add_id_action(actions, "show", "one window", "getFreezeWindow", id_help=_ID)
    add_id_action(
        actions,
        "delete",
        "cancel a window, or end one in force now",
        "deleteFreezeWindow",
        id_help=_ID,
    )
