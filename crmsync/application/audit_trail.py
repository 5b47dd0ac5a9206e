"""The admin audit trail: who changed what, when, on which target (issue 20).

Every mutating operation of the application layer is wrapped with :func:`audited`, so the
admin API, the CLI and the console record the same way without knowing about it. The row
is written in the operation's transaction: a change that commits has its row, and a
refused or failed one leaves neither. The request is kept with secrets redacted.
"""

from __future__ import annotations

import functools
import getpass
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel

from crmsync.application import pagination
from crmsync.application.context import Context
from crmsync.application.models import AuditEntry, AuditLogQuery, Page
from crmsync.application.paging import page
from crmsync.common.db import Conn

P = ParamSpec("P")
R = TypeVar("R")

REDACTED = "[redacted]"
# Field names whose values are secrets wherever they stand in a request.
_SECRET = re.compile(r"secret|token|password|passphrase|private|(^|_)key$|signature", re.I)
# Field names whose values are personal data: the audit trail is kept for ever, and a
# privacy erase (crmsync.application.privacy) must leave no copy of the address behind.
_PERSONAL = re.compile(r"(^|_)email$", re.I)
# Arguments that are the request's clock, not part of the change.
_NOT_CHANGE = frozenset({"now"})


def _hidden(name: str) -> bool:
    return bool(_SECRET.search(name) or _PERSONAL.search(name))


def redact(value: Any) -> Any:
    """``value`` as JSON with every secret-named and email field's value replaced."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, dict):
        return {
            k: (REDACTED if v is not None and _hidden(str(k)) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _target_id(args: tuple[Any, ...], kwargs: dict[str, Any], result: Any) -> uuid.UUID | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, uuid.UUID):
            return value
    found = getattr(result, "id", None)
    return found if isinstance(found, uuid.UUID) else None


def _change(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    change: dict[str, Any] = {}
    for value in args:
        if isinstance(value, BaseModel):
            change.update(redact(value))
    for name, value in kwargs.items():
        if name in _NOT_CHANGE or isinstance(value, uuid.UUID):
            continue
        redacted = redact(value)
        if isinstance(value, BaseModel) and isinstance(redacted, dict):
            change.update(redacted)
        else:
            change[name] = REDACTED if _hidden(name) else redacted
    return change


def cli_actor() -> str:
    """The CLI's actor: the operating-system user who ran the command."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry, no LOGNAME: still say it was the CLI
        return "cli:unknown"


async def record(
    conn: Conn,
    tenant_id: uuid.UUID,
    actor: str,
    action: str,
    *,
    target_id: uuid.UUID | None,
    change: dict[str, Any],
) -> None:
    await conn.execute(
        """
        INSERT INTO admin_audit_log (tenant_id, actor, action, target_type, target_id, change)
        VALUES ($1, $2, $3, $4, $5, $6::jsonb)
        """,
        tenant_id,
        actor,
        action,
        action.split(".", 1)[0],
        target_id,
        change,
    )


Operation = Callable[Concatenate[Conn, Context, P], Coroutine[Any, Any, R]]


def audited(action: str) -> Callable[[Operation[P, R]], Operation[P, R]]:
    """Record ``action`` (``"<target type>.<verb>"``) with each successful call, in its
    transaction. The target is the first id the call names, else the id of what it made."""

    def wrap(operation: Operation[P, R]) -> Operation[P, R]:
        @functools.wraps(operation)
        async def run(conn: Conn, ctx: Context, /, *args: P.args, **kwargs: P.kwargs) -> R:
            async with conn.transaction():
                result = await operation(conn, ctx, *args, **kwargs)
                await record(
                    conn,
                    ctx.tenant_id,
                    ctx.actor,
                    action,
                    target_id=_target_id(args, kwargs, result),
                    change=_change(args, kwargs),
                )
            return result

        return run

    return wrap


async def list_(conn: Conn, ctx: Context, query: AuditLogQuery) -> Page[AuditEntry]:
    """Newest first."""
    before = pagination.decode(query.cursor, int)[0] if query.cursor else None
    rows = await conn.fetch(
        """
        SELECT id, at, actor, action, target_type, target_id, change
          FROM admin_audit_log
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR actor = $2)
           AND ($3::text IS NULL OR action = $3 OR target_type = $3)
           AND ($4::uuid IS NULL OR target_id = $4)
           AND ($5::timestamptz IS NULL OR at >= $5)
           AND ($6::timestamptz IS NULL OR at < $6)
           AND ($7::bigint IS NULL OR id < $7)
         ORDER BY id DESC
         LIMIT $8
        """,
        ctx.tenant_id,
        query.actor,
        query.action,
        query.target,
        query.since,
        query.until,
        before,
        query.limit + 1,
    )
    return page([AuditEntry(**dict(r)) for r in rows], query.limit, lambda e: (e.id,))
