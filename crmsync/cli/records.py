"""``crmsync records``: canonical customers, jobs, invoices and payments with their links."""

from __future__ import annotations

import argparse

from crmsync.application import records
from crmsync.application.models import CustomerQuery, InvoiceQuery, RecordQuery
from crmsync.cli import admin_common as cli

TYPES = tuple(records.COLLECTIONS)
COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "version",
    "updated=updated_at",
    ("links", lambda r: ",".join(f"{link.provider}:{link.external_id}" for link in r.links)),
    "data",
)


@cli.command
def _list(args: argparse.Namespace) -> int:
    query_cls: type[RecordQuery] = RecordQuery
    extra: dict[str, str | None] = {}
    if args.type == "customers":
        query_cls, extra = CustomerQuery, {"email": args.email}
    elif args.type == "invoices":
        query_cls, extra = InvoiceQuery, {"number": args.number, "status": args.status}
    elif args.email or args.number or args.status:
        raise cli.CommandError(
            "--email is for customers, --number/--status for invoices", cli.EXIT_INVALID
        )
    query = cli.model(
        query_cls,
        limit=args.limit,
        cursor=args.cursor,
        connection=cli.optional_connection_id(args, args.connection),
        external_id=args.external_id,
        updated_since=args.updated_since,
        include_deleted=args.include_deleted or None,
        **extra,
    )
    result = cli.call(args, f"list{args.type.capitalize()}", query=query)
    return cli.emit(result, args.json, COLUMNS)


@cli.command
def _show(args: argparse.Namespace) -> int:
    operation_id = f"get{args.type.capitalize()[:-1]}"
    return cli.emit(cli.call(args, operation_id, record_id=args.id), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(sub, "records", "canonical customers, jobs, invoices and payments")
    list_ = cli.add_action(
        actions, "list", "records, oldest change first, with filters", _list, page=True
    )
    list_.add_argument("type", choices=TYPES, help="which records")
    list_.add_argument(
        "--connection",
        type=cli.connection_arg,
        help="linked to this connection (id or TENANT/NAME)",
    )
    list_.add_argument("--external-id", help="its id in a connection")
    list_.add_argument("--updated-since", help="ISO 8601 time with offset")
    list_.add_argument("--include-deleted", action="store_true", help="deleted records too")
    list_.add_argument("--email", help="customers: by email (case-insensitive)")
    list_.add_argument("--number", help="invoices: by number")
    list_.add_argument("--status", help="invoices: by status")
    show = cli.add_action(actions, "show", "one record with its links", _show)
    show.add_argument("type", choices=TYPES, help="which kind of record")
    show.add_argument("id", type=cli.uuid_arg, help="record id")
