"""``crmsync audit``: the ledger (DESIGN invariant 13), per connection; exit 1 when
anything is unaccounted, so a script or a fault test can rely on the status alone.

With ``--tenant`` (or in remote mode, for the API key's tenant) it is the admin API's
``GET /v1/audit/ledger``; locally without, every tenant's connections (an operator's view of
the whole deployment, which no API key has)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime

from crmsync.application import ledger_io
from crmsync.application.errors import AdminError
from crmsync.application.models import ConnectionLedgerOut, LedgerQuery, LedgerReport
from crmsync.cli import admin_common as cli
from crmsync.cli.backend import ConnectionRef, is_remote, reach_stack
from crmsync.common.connections import connection_exists
from crmsync.common.db import connect
from crmsync.common.settings import parse_settings
from crmsync.settings.admin import AdminSettings


def _skipped(counts: dict[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(counts.items())) or "0"


COLUMNS: list[cli.Column] = cli.columns(
    "connection=connection_id",
    "provider",
    "accepted=inbound.accepted",
    "applied=inbound.applied",
    "duplicates=inbound.duplicates",
    ("skipped", lambda c: _skipped(c.inbound.skipped)),
    "dead=inbound.dead_lettered",
    "in_flight=inbound.in_flight",
    "unaccounted=inbound.unaccounted",
    ("| changes", lambda c: f"| {c.outbound.changes}"),
    "pushed=outbound.pushed",
    ("skipped_out", lambda c: _skipped(c.outbound.skipped)),
    "dead_out=outbound.dead_lettered",
    "pending=outbound.pending",
    "unaccounted_out=outbound.unaccounted",
)


async def _every_tenant(query: LedgerQuery, now: datetime) -> LedgerReport:
    settings = parse_settings(AdminSettings)
    conn = await reach_stack(connect(settings.database_url))
    try:
        # Every tenant's ledger: the operator's connection may be any tenant's.
        if query.connection is not None and not await connection_exists(
            conn, query.connection, tenant_id=None
        ):
            raise cli.CommandError(f"no connection {query.connection}", cli.EXIT_NOT_FOUND)
        found = await ledger_io.ledger(
            conn,
            settings.kafka_target(),
            connection=query.connection,
            since=query.since or now - ledger_io.DEFAULT_WINDOW,
            until=query.until,
            now=now,
        )
    except AdminError as exc:
        raise cli.CommandError(exc.detail, cli.EXIT_UNAVAILABLE) from None
    finally:
        await conn.close()
    return LedgerReport.of(found)


@cli.command
def _audit(args: argparse.Namespace) -> int:
    ref: ConnectionRef | None = args.connection
    connection: uuid.UUID | None = None
    if ref is not None and ref.id is None:
        # TENANT/NAME: that tenant's ledger (locally it sets --tenant).
        connection = cli.connection_id(args, ref)
    elif ref is not None:
        connection = ref.id
    query = cli.model(LedgerQuery, connection=connection, since=args.since, until=args.until)
    report: LedgerReport
    if args.tenant is None and not is_remote(args):
        report = asyncio.run(_every_tenant(query, datetime.now(UTC)))
    else:
        report = cli.call(args, "getLedger", query=query)
    if args.json:
        print(report.model_dump_json())
    else:
        rows: list[ConnectionLedgerOut] = report.connections
        print(cli.table(rows, COLUMNS))
        print(f"window {report.since or 'start'} .. {report.until}; in flight {report.in_flight}")
    for note in report.notes:
        print(f"crmsync: note: {note}", file=sys.stderr)
    for problem in report.problems:
        print(f"crmsync: unaccounted: {problem}", file=sys.stderr)
    return cli.EXIT_OK if report.balanced else cli.EXIT_UNAVAILABLE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "audit", help="the ledger: every acknowledged event and committed change accounted for"
    )
    p.add_argument("--tenant", help="tenant slug (default: every tenant)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    cli.add_remote(p)
    p.add_argument(
        "--connection", type=cli.connection_arg, help="only this connection (id or TENANT/NAME)"
    )
    p.add_argument("--since", help="ISO 8601 time with offset (default: 24 hours ago)")
    p.add_argument("--until", help="ISO 8601 time with offset (default: now)")
    p.set_defaults(handler=_audit)
