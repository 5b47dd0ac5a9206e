"""What the admin command groups share: options, running one operation in this command's
mode (:mod:`crmsync.cli.backend`: locally on PostgreSQL or through the admin API), and
printing its result as a table or as JSON.

The operations are the admin API's own (``crmsync.application``): a command does exactly
what the matching endpoint does. Exit status (also in ``crmsync --help``):
0 done, 1 a dependency is unreachable, 2 invalid input (or an API key refused), 3 not
found, 4 conflicts with the current state.
"""

from __future__ import annotations

import argparse
import inspect
import json
import operator
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from crmsync.application.models import Page
from crmsync.application.operations import OPERATIONS
from crmsync.cli.backend import (
    EXIT_CONFLICT,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CommandError,
    ConnectionRef,
    call,
    connection_arg,
    connection_id,
    optional_connection_id,
)

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_INVALID",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "CommandError",
    "call",
    "connection_arg",
    "connection_id",
    "optional_connection_id",
]

M = TypeVar("M", bound=BaseModel)
Column = tuple[str, Callable[[Any], Any]]


def columns(*specs: str | Column) -> list[Column]:
    """A table's columns: ``"name"`` shows the attribute ``name``, ``"header=path"`` shows
    the attribute at the dotted ``path`` under that header, and a ``(header, function)``
    pair whatever the function makes of the row."""
    out: list[Column] = []
    for spec in specs:
        if isinstance(spec, tuple):
            out.append(spec)
        else:
            header, _, path = spec.partition("=")
            out.append((header, operator.attrgetter(path or header)))
    return out


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


def emit_shown_once(result: BaseModel, as_json: bool, note: str) -> int:
    """Print a result that carries a secret shown only now and, to a person, ``note``
    saying so (a script reads the JSON and needs no telling)."""
    code = emit(result, as_json)
    if not as_json:
        print(note)
    return code


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A handler whose CommandErrors print to stderr and become the exit status."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except CommandError as exc:
            print(f"crmsync: {exc}", file=sys.stderr)
            return exc.code

    return handler


def id_param(operation_id: str) -> str:
    """The name of the id an operation on one item takes (``connection_id``, ...)."""
    params = list(inspect.signature(OPERATIONS[operation_id]).parameters)
    return next(p for p in params[2:] if p.endswith("_id"))


def on_id(operation_id: str) -> Callable[[argparse.Namespace], int]:
    """The command that runs ``operation_id`` on its ``id`` argument and prints what it
    returns (a connection's id may be TENANT/NAME)."""

    @command
    def handler(args: argparse.Namespace) -> int:
        item = args.id
        if isinstance(item, ConnectionRef):
            item = connection_id(args, item)
        return emit(call(args, operation_id, **{id_param(operation_id): item}), args.json)

    return handler


def list_command(
    operation_id: str, query: type[M], columns: Sequence[Column], **options: str
) -> Callable[[argparse.Namespace], int]:
    """The command that prints a page of ``operation_id``, its query read by
    :func:`query_from`."""

    @command
    def handler(args: argparse.Namespace) -> int:
        built = query_from(query, args, **options)
        return emit(call(args, operation_id, query=built), args.json, columns)

    return handler


def query_from(query: type[M], args: argparse.Namespace, **options: str) -> M:
    """Each field of ``query`` from the option of the same name (``options`` names the ones
    called otherwise); an option not given, or not offered, leaves the field's default. A
    connection named TENANT/NAME becomes its id."""
    return _from_options(query, args, options, {})


def body_from(body: type[M], args: argparse.Namespace, **given: Any) -> M:
    """A request body read as :func:`query_from` reads a query, but for the ``given`` values
    (options that need more than their name, e.g. a comma-separated list)."""
    return _from_options(body, args, {}, given)


def _from_options(
    cls: type[M], args: argparse.Namespace, options: Mapping[str, str], given: Mapping[str, Any]
) -> M:
    values = {
        f: given[f] if f in given else getattr(args, options.get(f, f), None)
        for f in cls.model_fields
    }
    for name, value in values.items():
        if isinstance(value, ConnectionRef):
            values[name] = connection_id(args, value)
    return model(cls, **values)


def add_group(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``crmsync NAME ACTION ...``: a group of admin actions; add them to what it returns."""
    parser = sub.add_parser(name, help=help_, description=help_)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def add_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_: str,
    handler: Callable[[argparse.Namespace], int],
    *,
    page: bool = False,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """``ACTION [--tenant T] [--json] [--api-url U] [--api-key K]``, run by ``handler``
    (``page``: with ``--limit`` and ``--cursor``); add its own arguments to the parser it
    returns. ``description`` is left to the caller: most actions' ``--help`` shows none."""
    parser = actions.add_parser(name, help=help_, description=description)
    add_common(parser, page=page)
    parser.set_defaults(handler=handler)
    return parser


def add_list_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    help_: str,
    operation_id: str,
    query: type[M],
    columns: Sequence[Column],
    **options: str,
) -> argparse.ArgumentParser:
    """``list [--tenant T] [--limit N] [--cursor C]``: a page of ``operation_id``
    (:func:`list_command`); add the query's filter options to the parser it returns."""
    handler = list_command(operation_id, query, columns, **options)
    return add_action(actions, "list", help_, handler, page=True, description=help_)


def add_id_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_: str,
    operation_id: str,
    *,
    id_help: str,
) -> argparse.ArgumentParser:
    """``ACTION [--tenant T] ID``: ``operation_id`` on one item."""
    parser = add_action(actions, name, help_, on_id(operation_id), description=help_)
    parser.add_argument("id", type=uuid_arg, help=id_help)
    return parser


def add_remote(parser: argparse.ArgumentParser) -> None:
    """``--api-url`` and ``--api-key``: run the command through a deployed admin API."""
    parser.add_argument(
        "--api-url",
        help="remote mode: the admin API to call instead of PostgreSQL "
        "(default: $CRMSYNC_API_URL; unset: local mode)",
    )
    parser.add_argument(
        "--api-key",
        help="remote mode: an admin (or, to read, a read) API key of the tenant "
        "(default: $CRMSYNC_API_KEY, which keeps it out of the process list)",
    )


def add_common(parser: argparse.ArgumentParser, *, page: bool = False) -> None:
    parser.add_argument(
        "--tenant",
        help="tenant slug (local mode: required unless a connection named by id or "
        "TENANT/NAME gives it; remote mode: checked against the API key's tenant)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_remote(parser)
    if page:
        parser.add_argument("--limit", type=int, help="items per page (default 50)")
        parser.add_argument("--cursor", help="the cursor printed after the previous page")
