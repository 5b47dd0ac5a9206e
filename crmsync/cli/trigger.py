"""``crmsync trigger PROVIDER EVENT --connection C``: send a connection a correctly signed
sample webhook of its provider (``crmsync.application.trigger``), as ``stripe trigger``
does; ``crmsync trigger --list`` lists the samples."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import UTC, datetime

from crmsync.application import trigger
from crmsync.application.context import Context
from crmsync.application.errors import NotFoundError
from crmsync.application.models import TriggerRequest, TriggerResult
from crmsync.cli.admin_common import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNAVAILABLE,
    CommandError,
    command,
    emit,
    model,
    run,
)
from crmsync.common import connections as stored
from crmsync.common.db import Conn, DatabaseUnavailableError, connect
from crmsync.common.settings import parse_settings
from crmsync.localstack.status import StackError
from crmsync.settings.admin import AdminSettings


def _reference(text: str) -> tuple[str | None, uuid.UUID | None, str | None]:
    """(tenant, id, name) of a connection given by id or TENANT/NAME."""
    try:
        return None, uuid.UUID(text), None
    except ValueError:
        pass
    tenant, _, name = text.partition("/")
    if not tenant or not name:
        raise CommandError(f"--connection {text!r}: give its id or TENANT/NAME", EXIT_INVALID)
    return tenant, None, name


async def _tenant_of(connection_id: uuid.UUID) -> str | None:
    settings = parse_settings(AdminSettings)
    try:
        conn = await connect(settings.database_url)
    except DatabaseUnavailableError as exc:
        raise StackError(f"{exc}; is the stack up (crmsync infra up)?") from None
    try:
        return await stored.tenant_slug_of(conn, connection_id)
    finally:
        await conn.close()


def _list(as_json: bool) -> int:
    found = trigger.catalogue()
    if as_json:
        return emit(found, as_json)
    for provider, events in found.providers.items():
        for event in events:
            print(f"{provider:<12} {event}")
    return 0


@command
def _trigger(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if args.provider is None or args.event is None or args.connection is None:
        raise CommandError("give PROVIDER EVENT --connection C (or --list)", EXIT_INVALID)
    body = model(TriggerRequest, event=args.event, provider=args.provider)
    tenant, connection_id, name = _reference(args.connection)
    if tenant is None:
        assert connection_id is not None  # noqa: S101 - _reference gives one or the other
        tenant = asyncio.run(_tenant_of(connection_id))
        if tenant is None:
            raise CommandError(f"no connection {args.connection}", EXIT_NOT_FOUND)
    args.tenant = tenant
    now = datetime.now(UTC)

    async def send(conn: Conn, ctx: Context) -> TriggerResult:
        cid = connection_id
        if cid is None:
            found = await stored.find_by_name(conn, tenant=tenant, name=name or "")
            if found is None:
                raise NotFoundError(f"no connection {args.connection}")
            cid = found["id"]
        return await trigger.trigger(conn, ctx, cid, body, now=now, send_to=args.ingest_url)

    result = run(args, send)
    emit(result, args.json)
    if not 200 <= result.ingest_status < 300:
        print(f"crmsync: ingest answered {result.ingest_status}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trigger",
        help="send a connection a signed sample webhook of its provider",
        description="Send a connection a correctly signed sample webhook of its provider, "
        "through ingest, as a new delivery (unique event ids, dated now).",
    )
    p.add_argument("provider", nargs="?", help="the connection's provider, e.g. stripe")
    p.add_argument("event", nargs="?", help="a sample event, e.g. customer.created (--list)")
    p.add_argument("--connection", help="connection id, or TENANT/NAME")
    p.add_argument("--list", action="store_true", help="list every provider's sample events")
    p.add_argument(
        "--ingest-url",
        help="POST to this base URL instead of the public one the webhook is signed for "
        "(default: CRMSYNC_INGEST_PUBLIC_BASE_URL)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_trigger)
