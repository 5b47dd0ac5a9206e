"""``crmsync records``: canonical customers, jobs, invoices and payments with their links."""

from __future__ import annotations

import argparse

from crmsync.application import records
from crmsync.application.models import CustomerQuery, InvoiceQuery, RecordQuery
from crmsync.cli.admin_common import (
    EXIT_INVALID,
    Column,
    CommandError,
    add_common,
    add_group,
    command,
    emit,
    model,
    run,
    uuid_arg,
)

TYPES = tuple(records.COLLECTIONS)
COLUMNS: list[Column] = [
    ("id", lambda r: r.id),
    ("version", lambda r: r.version),
    ("updated", lambda r: r.updated_at),
    ("links", lambda r: ",".join(f"{link.provider}:{link.external_id}" for link in r.links)),
    ("data", lambda r: r.data),
]


@command
def _list(args: argparse.Namespace) -> int:
    entity_type = records.COLLECTIONS[args.type]
    query_cls: type[RecordQuery] = RecordQuery
    extra: dict[str, str | None] = {}
    if args.type == "customers":
        query_cls, extra = CustomerQuery, {"email": args.email}
    elif args.type == "invoices":
        query_cls, extra = InvoiceQuery, {"number": args.number, "status": args.status}
    elif args.email or args.number or args.status:
        raise CommandError("--email is for customers, --number/--status for invoices", EXIT_INVALID)
    query = model(
        query_cls,
        limit=args.limit,
        cursor=args.cursor,
        connection=args.connection,
        external_id=args.external_id,
        updated_since=args.updated_since,
        include_deleted=args.include_deleted or None,
        **extra,
    )
    result = run(args, lambda c, ctx: records.list_(c, ctx, entity_type, query))
    return emit(result, args.json, COLUMNS)


@command
def _show(args: argparse.Namespace) -> int:
    entity_type = records.COLLECTIONS[args.type]
    return emit(run(args, lambda c, ctx: records.get(c, ctx, entity_type, args.id)), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "records", "canonical customers, jobs, invoices and payments")
    list_ = actions.add_parser("list", help="records, oldest change first, with filters")
    list_.add_argument("type", choices=TYPES)
    add_common(list_, page=True)
    list_.add_argument("--connection", type=uuid_arg, help="linked to this connection")
    list_.add_argument("--external-id", help="its id in a connection")
    list_.add_argument("--updated-since", help="ISO 8601 time with offset")
    list_.add_argument("--include-deleted", action="store_true")
    list_.add_argument("--email", help="customers: by email (case-insensitive)")
    list_.add_argument("--number", help="invoices: by number")
    list_.add_argument("--status", help="invoices: by status")
    list_.set_defaults(handler=_list)
    show = actions.add_parser("show", help="one record with its links")
    show.add_argument("type", choices=TYPES)
    show.add_argument("id", type=uuid_arg)
    add_common(show)
    show.set_defaults(handler=_show)
