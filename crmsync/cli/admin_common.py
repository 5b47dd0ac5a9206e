"""What the admin command groups share: running one admin operation against the database
for a tenant, and printing its result as a table or as JSON.

The operations are the admin API's own (``crmsync.application``): a command does exactly
what the matching endpoint does. Exit status (also in ``crmsync --help``):
0 done, 1 a dependency is unreachable, 2 invalid input, 3 not found, 4 conflicts with the
current state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from crmsync.application.audit_trail import cli_actor
from crmsync.application.context import Context
from crmsync.application.errors import (
    AdminError,
    ConflictError,
    InvalidError,
    NotFoundError,
)
from crmsync.application.models import Page
from crmsync.common.apikeys import ensure_tenant
from crmsync.common.db import Conn, DatabaseUnavailableError, connect
from crmsync.common.settings import parse_settings
from crmsync.localstack.status import StackError
from crmsync.settings.admin import AdminSettings, keyring_from
from schemas.errors import RefuseInput

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
Op = Callable[[Conn, Context], Awaitable[T]]
# An operation on one item: show, revoke, cancel, discard, delete, ...
IdOp = Callable[[Conn, Context, uuid.UUID], Awaitable[BaseModel | None]]
Column = tuple[str, Callable[[Any], Any]]


class CommandError(RefuseInput):
    """Ends the command with ``code`` after printing the message."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _exit_code(exc: AdminError) -> int:
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConflictError):
        return EXIT_CONFLICT
    if isinstance(exc, InvalidError):
        return EXIT_INVALID
    return EXIT_UNAVAILABLE


def _describe(exc: AdminError) -> str:
    errors = exc.extensions.get("errors") or []
    where = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors)
    return f"{exc.detail} ({where})" if where else exc.detail


async def _run(tenant: str, op: Op[T], *, create_tenant: bool) -> T:
    settings = parse_settings(AdminSettings)
    keyring = keyring_from(settings)
    try:
        conn = await connect(settings.database_url)
    except DatabaseUnavailableError as exc:
        raise StackError(f"{exc}; is the stack up (crmsync infra up)?") from None
    try:
        if create_tenant:
            tenant_id = await ensure_tenant(conn, tenant)
        else:
            tenant_id = await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", tenant)
            if tenant_id is None:
                raise CommandError(f"no tenant {tenant!r}", EXIT_NOT_FOUND)
        ctx = Context(
            tenant_id=tenant_id,
            keyring=keyring,
            public_base_url=settings.ingest_public_base_url,
            kafka=settings.kafka_target(),
            actor=cli_actor(),
            allow_private_provider_urls=settings.allow_private_provider_urls,
        )
        return await op(conn, ctx)
    finally:
        await conn.close()


def run(args: argparse.Namespace, op: Op[T], *, create_tenant: bool = False) -> T:
    """Run ``op`` for ``--tenant``; refusals become :class:`CommandError`."""
    try:
        return asyncio.run(_run(args.tenant, op, create_tenant=create_tenant))
    except AdminError as exc:
        raise CommandError(_describe(exc), _exit_code(exc)) from None


def model(cls: type[M], **values: Any) -> M:
    """Build a request model from options (None: not given); invalid input exits 2."""
    return validate(cls, {k: v for k, v in values.items() if v is not None})


def validate(cls: type[M], data: Any) -> M:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise CommandError(f"invalid input: {where}", EXIT_INVALID) from None


def json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise CommandError(f"{what} is not JSON", EXIT_INVALID) from None


def uuid_arg(text: str) -> uuid.UUID:
    """argparse type for ids."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an id: {text!r}") from None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def table(rows: Sequence[Any], columns: Sequence[Column]) -> str:
    cells = [[h for h, _ in columns]] + [[_cell(get(r)) for _, get in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def emit(result: BaseModel | None, as_json: bool, columns: Sequence[Column] = ()) -> int:
    """Print a result: JSON for scripts, else a table (pages) or ``field value`` lines."""
    if result is None:
        if as_json:
            print("{}")
        return EXIT_OK
    if as_json:
        print(result.model_dump_json())
        return EXIT_OK
    if isinstance(result, Page):
        print(table(result.items, columns))
        if result.next_cursor:
            print(f"(more: --cursor {result.next_cursor})", file=sys.stderr)
        return EXIT_OK
    for key, value in result.model_dump(mode="json").items():
        print(f"{key:<22} {_cell(value)}")
    return EXIT_OK


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A handler whose CommandErrors print to stderr and become the exit status."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CommandError as exc:
            print(f"crmsync: {exc}", file=sys.stderr)
            return exc.code

    return handler


def on_id(op: IdOp) -> Callable[[argparse.Namespace], int]:
    """The command that runs ``op`` on its ``id`` argument and prints what it returns."""

    @command
    def handler(args: argparse.Namespace) -> int:
        return emit(run(args, lambda c, ctx: op(c, ctx, args.id)), args.json)

    return handler


def list_command(
    op: Callable[[Conn, Context, M], Awaitable[Page[Any]]],
    query: type[M],
    columns: Sequence[Column],
    **options: str,
) -> Callable[[argparse.Namespace], int]:
    """The command that prints a page of ``op``, its query read by :func:`query_from`."""

    @command
    def handler(args: argparse.Namespace) -> int:
        built = query_from(query, args, **options)
        return emit(run(args, lambda c, ctx: op(c, ctx, built)), args.json, columns)

    return handler


def query_from(query: type[M], args: argparse.Namespace, **options: str) -> M:
    """Each field of ``query`` from the option of the same name (``options`` names the ones
    called otherwise); an option not given, or not offered, leaves the field's default."""
    return model(query, **{f: getattr(args, options.get(f, f), None) for f in query.model_fields})


def add_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``crmsync NAME ACTION ...``: a group of admin actions; add them to what it returns."""
    parser = sub.add_parser(name, help=help_)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_list_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    help_: str,
    op: Callable[[Conn, Context, M], Awaitable[Page[Any]]],
    query: type[M],
    columns: Sequence[Column],
    **options: str,
) -> argparse.ArgumentParser:
    """``list --tenant T [--limit N] [--cursor C]``: a page of ``op`` (:func:`list_command`);
    add the query's filter options to the parser it returns."""
    parser = actions.add_parser("list", help=help_)
    add_common(parser, page=True)
    parser.set_defaults(handler=list_command(op, query, columns, **options))
    return parser


def add_id_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_: str,
    op: IdOp,
    *,
    id_help: str | None = None,
) -> argparse.ArgumentParser:
    """``ACTION --tenant T ID``: ``op`` on one item."""
    parser = actions.add_parser(name, help=help_)
    add_common(parser)
    parser.add_argument("id", type=uuid_arg, help=id_help)
    parser.set_defaults(handler=on_id(op))
    return parser


def add_common(parser: argparse.ArgumentParser, *, page: bool = False) -> None:
    parser.add_argument("--tenant", required=True, help="tenant slug")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    if page:
        parser.add_argument("--limit", type=int, help="items per page (default 50)")
        parser.add_argument("--cursor", help="the cursor printed after the previous page")
