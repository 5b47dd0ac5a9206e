"""``crmsync freeze-windows``: scheduled pauses of one connection or the whole tenant
(``/v1/freeze-windows``), e.g. "read-only on the wedding day": add, list, show, delete (a
window not started is cancelled; one in force ends now)."""

from __future__ import annotations

import argparse

from crmsync.application.models import FreezeWindowCreate, FreezeWindowQuery
from crmsync.cli import admin_common as cli

_ID = "freeze window id"
COLUMNS: list[cli.Column] = cli.columns(
    "id",
    ("connection", lambda w: w.connection_id or "all"),
    "in=inbound",
    "out=outbound",
    "starts=starts_at",
    "ends=ends_at",
    "reason",
)


@cli.command
def _add(args: argparse.Namespace) -> int:
    body = cli.body_from(FreezeWindowCreate, args)
    return cli.emit(cli.call(args, "createFreezeWindow", body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(sub, "freeze-windows", "scheduled pauses, in and/or out")
    add = cli.add_action(actions, "add", "schedule a window", _add)
    add.add_argument(
        "--connection",
        type=cli.connection_arg,
        help="one connection, id or TENANT/NAME (default: all of the tenant's)",
    )
    add.add_argument("--direction", choices=("in", "out", "both"), help="default both")
    add.add_argument("--starts-at", required=True, help="ISO 8601 time with offset")
    add.add_argument("--ends-at", required=True, help="ISO 8601 time with offset")
    add.add_argument("--reason", help="why, e.g. the wedding day")
    list_ = cli.add_list_action(
        actions,
        "windows not over yet",
        "listFreezeWindows",
        FreezeWindowQuery,
        COLUMNS,
        include_past="all",
    )
    list_.add_argument("--connection", type=cli.connection_arg, help="id or TENANT/NAME")
    list_.add_argument("--all", action="store_true", help="include windows that are over")
    cli.add_id_action(actions, "show", "one window", "getFreezeWindow", id_help=_ID)
    cli.add_id_action(
        actions,
        "delete",
        "cancel a window, or end one in force now",
        "deleteFreezeWindow",
        id_help=_ID,
    )
