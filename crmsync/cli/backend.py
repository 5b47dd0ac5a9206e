"""Where an operator command runs: locally, on PostgreSQL (the application layer's
operations, as the admin API runs them), or remotely, through a deployed admin API
(``--api-url``/``CRMSYNC_API_URL`` with ``--api-key``/``CRMSYNC_API_KEY``).

A command names an operation by its admin API operationId and passes the arguments the
route passes it, by name: path ids, ``query``, ``body``::

    shown = call(args, "getConnection", connection_id=connection_id(args, args.id))

Local mode calls ``OPERATIONS["getConnection"]`` with a connection and a context for
``--tenant`` (and ``now``, when the operation takes it). Remote mode finds the route of that
operationId in the server's ``/openapi.json``, sends the ids in the path, ``query`` as
parameters and ``body`` as JSON, and reads the answer into the operation's return type: the
command prints the same in both modes. A refusal is an ``AdminError`` in both (a problem
document becomes one), and :func:`call` turns it into the exit status of :mod:`main`.

To add an operator command to both modes:

1. its route in ``services/admin/routes.py`` (the API is the remote mode);
2. its operation under that operationId in ``crmsync.application.operations.OPERATIONS``
   (the route finds it there by operationId, so both modes run the same function);
3. in the command's module: options through ``admin_common.add_common`` (``--tenant``,
   ``--json``, ``--api-url``, ``--api-key``), a connection option of type
   ``connection_arg`` read with ``connection_id`` (id or TENANT/NAME), the work done by
   ``call``, the result printed by ``admin_common.emit``.

A command that has no route runs only locally: add it to ``LOCAL_ONLY`` in ``main.py``,
which refuses it when remote mode is set.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import aiohttp
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from crmsync.application import audit_trail, tenants
from crmsync.application.context import Context
from crmsync.application.errors import AdminError
from crmsync.application.models import ConnectionQuery, TenantOut
from crmsync.application.operations import OPERATIONS, Operation
from crmsync.common.apikeys import ensure_tenant
from crmsync.common.connections import connection_row
from crmsync.common.db import Conn, DatabaseUnavailableError, connect
from crmsync.common.settings import parse_settings
from crmsync.localstack.status import StackError
from crmsync.settings.admin import AdminSettings, keyring_from
from crmsync.settings.remote import RemoteSettings
from schemas.errors import RefuseInput

T = TypeVar("T")

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_INVALID = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4


async def reach_stack(opening: Awaitable[T]) -> T:
    """A connection or pool to the stack's PostgreSQL being opened (``common.db``'s
    ``connect`` or ``create_pool``); unreachable, a StackError saying to start the stack."""
    try:
        return await opening
    except DatabaseUnavailableError as exc:
        raise StackError(f"{exc}; is the stack up (crmsync infra up)?") from None


class CommandError(RefuseInput):
    """Ends the command with ``code`` after printing the message."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class RefusedError(AdminError):
    """A problem document the admin API answered: the operation's refusal, as local mode
    would have raised it (same status, detail and extensions)."""

    def __init__(self, status: int, detail: str, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.status = status


def exit_code(exc: AdminError) -> int:
    """The exit status of a refusal, by its HTTP status (the same in both modes)."""
    if exc.status == 404:
        return EXIT_NOT_FOUND
    if exc.status == 409:
        return EXIT_CONFLICT
    if exc.status in (400, 401, 403, 422):
        return EXIT_INVALID
    return EXIT_UNAVAILABLE


def describe(exc: AdminError) -> str:
    errors = exc.extensions.get("errors") or []
    where = "; ".join(f"{e.get('loc')}: {e.get('msg')}" for e in errors if isinstance(e, dict))
    return f"{exc.detail} ({where})" if where else exc.detail


# -- naming a connection: its id, or TENANT/NAME ---------------------------------------------


@dataclass(frozen=True)
class ConnectionRef:
    text: str
    id: uuid.UUID | None = None
    tenant: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        return self.text


def connection_arg(text: str) -> ConnectionRef:
    """argparse type of every option or argument naming a connection."""
    try:
        return ConnectionRef(text, id=uuid.UUID(text))
    except ValueError:
        pass
    tenant, _, name = text.partition("/")
    if not tenant or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: give a connection id or TENANT/NAME")
    return ConnectionRef(text, tenant=tenant, name=name)


# -- the two backends ------------------------------------------------------------------------


class Backend(Protocol):
    async def call(self, operation_id: str, arguments: dict[str, Any]) -> Any: ...

    async def resolve(self, ref: ConnectionRef) -> uuid.UUID: ...


def _takes_now(operation: Operation) -> bool:
    return "now" in inspect.signature(operation).parameters


def _tenant_mismatch(args: argparse.Namespace, ref: ConnectionRef) -> None:
    if args.tenant is not None and ref.tenant != args.tenant:
        raise CommandError(f"connection {ref} is not of --tenant {args.tenant}", EXIT_INVALID)


async def _named(backend: Backend, ref: ConnectionRef) -> uuid.UUID:
    try:
        query = ConnectionQuery(name=ref.name)
    except ValidationError:
        raise CommandError(f"connection {ref}: {ref.name!r} is not a name", EXIT_INVALID) from None
    found = await backend.call("listConnections", {"query": query})
    if not found.items:
        raise CommandError(f"no connection {ref}", EXIT_NOT_FOUND)
    connection: uuid.UUID = found.items[0].id
    return connection


@dataclass
class Local:
    """The operations on PostgreSQL, for ``--tenant`` (a connection named TENANT/NAME, or
    by id, names its tenant when ``--tenant`` is not given)."""

    args: argparse.Namespace
    conn: Conn
    settings: AdminSettings
    create_tenant: bool = False

    async def _context(self) -> Context:
        slug: str | None = self.args.tenant
        if slug is None:
            raise CommandError(
                "--tenant is required (or name a connection by id or TENANT/NAME)", EXIT_INVALID
            )
        if self.create_tenant:
            tenant_id = await ensure_tenant(self.conn, slug)
        else:
            tenant_id = await self.conn.fetchval("SELECT id FROM tenants WHERE slug = $1", slug)
            if tenant_id is None:
                raise CommandError(f"no tenant {slug!r}", EXIT_NOT_FOUND)
        return self._for(tenant_id)

    def _for(self, tenant_id: uuid.UUID) -> Context:
        return Context(
            tenant_id=tenant_id,
            keyring=keyring_from(self.settings),
            public_base_url=self.settings.ingest_public_base_url,
            kafka=self.settings.kafka_target(),
            actor=audit_trail.cli_actor(),
            allow_private_provider_urls=self.settings.allow_private_provider_urls,
        )

    async def call(self, operation_id: str, arguments: dict[str, Any]) -> Any:
        operation = OPERATIONS[operation_id]
        ctx = await self._context()
        if _takes_now(operation):
            arguments = {**arguments, "now": datetime.now(UTC)}
        return await operation(self.conn, ctx, **arguments)

    async def resolve(self, ref: ConnectionRef) -> uuid.UUID:
        if ref.id is not None:
            if self.args.tenant is None:
                # An operator on the database names any tenant's connection by its id.
                row = await connection_row(self.conn, ref.id, tenant_id=None)
                if row is None:
                    raise CommandError(f"no connection {ref}", EXIT_NOT_FOUND)
                tenant = await tenants.current(self.conn, self._for(row["tenant_id"]))
                self.args.tenant = tenant.slug
            return ref.id
        _tenant_mismatch(self.args, ref)
        self.args.tenant = ref.tenant
        return await _named(self, ref)


@dataclass
class Remote:
    """The operations through the admin API, as the API key's tenant: ``--tenant`` and a
    connection's TENANT/NAME are checked against it, never used to reach another."""

    args: argparse.Namespace
    http: aiohttp.ClientSession
    url: str
    timeout: float
    routes: dict[str, tuple[str, str]] | None = None
    tenant: TenantOut | None = field(default=None, repr=False)

    async def _routes(self) -> dict[str, tuple[str, str]]:
        if self.routes is None:
            status, document = await self._get_json("/openapi.json")
            paths = document.get("paths") if isinstance(document, dict) else None
            if status != 200 or not isinstance(paths, dict):
                raise CommandError(
                    f"{self.url} is not a crmsync admin API (GET /openapi.json answered "
                    f"{status}); check --api-url or CRMSYNC_API_URL",
                    EXIT_INVALID,
                )
            self.routes = {
                op["operationId"]: (method.upper(), path)
                for path, methods in paths.items()
                for method, op in methods.items()
                if isinstance(op, dict) and "operationId" in op
            }
        return self.routes

    async def _get_json(self, path: str) -> tuple[int, Any]:
        status, raw = await self._send("GET", path, None, None)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, None

    async def _send(
        self, method: str, path: str, params: dict[str, str] | None, body: Any
    ) -> tuple[int, bytes]:
        try:
            async with self.http.request(
                method, self.url + path, params=params, json=body, allow_redirects=False
            ) as resp:
                return resp.status, await resp.read()
        except TimeoutError:
            raise CommandError(
                f"the admin API at {self.url} did not answer within {self.timeout:g}s",
                EXIT_UNAVAILABLE,
            ) from None
        except aiohttp.ClientError as exc:
            raise CommandError(
                f"cannot reach the admin API at {self.url}: {exc}", EXIT_UNAVAILABLE
            ) from None

    async def _key_tenant(self) -> TenantOut:
        if self.tenant is None:
            self.tenant = await self._request("getTenant", {})
        return self.tenant

    async def call(self, operation_id: str, arguments: dict[str, Any]) -> Any:
        if self.args.tenant is not None:
            own = (await self._key_tenant()).slug
            if own != self.args.tenant:
                raise CommandError(
                    f"the API key is tenant {own}'s; it cannot reach tenant {self.args.tenant}",
                    EXIT_INVALID,
                )
        return await self._request(operation_id, arguments)

    async def _request(self, operation_id: str, arguments: dict[str, Any]) -> Any:
        found = (await self._routes()).get(operation_id)
        if found is None:
            raise CommandError(
                f"the admin API at {self.url} has no operation {operation_id} "
                "(is it an older version than this CLI?)",
                EXIT_UNAVAILABLE,
            )
        method, template = found
        given = dict(arguments)
        path = template.format_map({name: str(given.pop(name)) for name in _placeholders(template)})
        query, body = given.pop("query", None), given.pop("body", None)
        if given:
            raise TypeError(f"{operation_id}: no route argument {sorted(given)}")
        status, raw = await self._send(method, path, _params(query), _json(body))
        if status >= 400:
            raise _refusal(status, raw)
        if status == 204:
            return None
        try:
            return _result_type(OPERATIONS[operation_id]).validate_json(raw)
        except ValidationError as exc:
            raise CommandError(
                f"the admin API's answer to {operation_id} is not what this CLI reads "
                f"({exc.error_count()} errors; different versions?)",
                EXIT_UNAVAILABLE,
            ) from None

    async def resolve(self, ref: ConnectionRef) -> uuid.UUID:
        if ref.id is not None:
            return ref.id
        _tenant_mismatch(self.args, ref)
        own = (await self._key_tenant()).slug
        if ref.tenant != own:
            raise CommandError(
                f"the API key is tenant {own}'s; it cannot reach connection {ref}", EXIT_INVALID
            )
        return await _named(self, ref)


def _placeholders(template: str) -> list[str]:
    return [part[1:-1] for part in template.split("/") if part.startswith("{")]


def _params(query: BaseModel | None) -> dict[str, str] | None:
    """A query model as the API reads it: each field given, as text."""
    if query is None:
        return None
    out = {}
    for name, value in query.model_dump(mode="json", exclude_none=True).items():
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _json(body: Any) -> Any:
    if body is None:
        return None
    if isinstance(body, BaseModel):
        # Only what the command set: a PATCH changes only what it names.
        return body.model_dump(mode="json", exclude_unset=True)
    return to_jsonable_python(body)


def _result_type(operation: Operation) -> TypeAdapter[Any]:
    func = operation.func if isinstance(operation, partial) else operation
    return TypeAdapter(typing.get_type_hints(func)["return"])


def _refusal(status: int, raw: bytes) -> AdminError:
    try:
        document = json.loads(raw)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {"detail": raw[:200].decode(errors="replace").strip() or f"HTTP {status}"}
    detail = str(document.get("detail") or document.get("title") or f"HTTP {status}")
    if status == 401:
        detail = f"the admin API refused the API key ({detail}); check --api-key or CRMSYNC_API_KEY"
    elif status == 403:
        detail = f"the admin API refused the API key: {detail}"
    extensions = {
        k: v for k, v in document.items() if k not in ("type", "title", "status", "detail")
    }
    return RefusedError(status, detail, **extensions)


# -- choosing and opening one -----------------------------------------------------------------


def remote_settings(args: argparse.Namespace) -> RemoteSettings:
    """The environment's remote mode, with ``--api-url``/``--api-key`` over it."""
    overrides = {
        name: value
        for name in ("api_url", "api_key")
        if (value := getattr(args, name, None)) is not None
    }
    return parse_settings(RemoteSettings, **overrides)


def is_remote(args: argparse.Namespace) -> bool:
    settings = remote_settings(args)
    if settings.api_url is None:
        if getattr(args, "api_key", None) is not None:
            raise CommandError(
                "--api-key is the admin API's key and needs --api-url (or CRMSYNC_API_URL); "
                "a provider's key is --provider-api-key",
                EXIT_INVALID,
            )
        return False
    return True


@asynccontextmanager
async def backend(
    args: argparse.Namespace, *, create_tenant: bool = False
) -> AsyncIterator[Backend]:
    """The backend of this command: remote when an API URL is set, else local."""
    settings = remote_settings(args)
    if is_remote(args):
        assert settings.api_url is not None  # noqa: S101 - is_remote checked it
        if settings.api_key is None or not settings.api_key.get_secret_value():
            raise CommandError(
                "remote mode needs an API key: --api-key or CRMSYNC_API_KEY", EXIT_INVALID
            )
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        timeout = aiohttp.ClientTimeout(total=settings.api_timeout_seconds)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            yield Remote(args, http, settings.api_url.rstrip("/"), settings.api_timeout_seconds)
        return
    admin = parse_settings(AdminSettings)
    conn = await reach_stack(connect(admin.database_url))
    try:
        yield Local(args, conn, admin, create_tenant=create_tenant)
    finally:
        await conn.close()


def run(args: argparse.Namespace, work: Callable[[Backend], Awaitable[Any]], **kw: Any) -> Any:
    """``work`` with this command's backend (several operations in one session); a refusal
    becomes a :class:`CommandError` with the exit status and message of local mode."""

    async def go() -> Any:
        async with backend(args, **kw) as opened:
            return await work(opened)

    try:
        return asyncio.run(go())
    except AdminError as exc:
        raise CommandError(describe(exc), exit_code(exc)) from None


def call(
    args: argparse.Namespace, operation_id: str, *, create_tenant: bool = False, **arguments: Any
) -> Any:
    """Run one operation in this command's mode (see :func:`run`). ``create_tenant``: local
    mode creates ``--tenant`` if new (remote mode acts for the key's tenant, which exists)."""
    return run(args, lambda b: b.call(operation_id, arguments), create_tenant=create_tenant)


def connection_id(args: argparse.Namespace, ref: ConnectionRef) -> uuid.UUID:
    """The id of the connection ``ref`` names (an id, or TENANT/NAME), in this mode."""
    return typing.cast(uuid.UUID, run(args, lambda b: b.resolve(ref)))


def optional_connection_id(args: argparse.Namespace, ref: ConnectionRef | None) -> uuid.UUID | None:
    return None if ref is None else connection_id(args, ref)
