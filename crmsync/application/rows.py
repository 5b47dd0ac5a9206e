"""One tenant's row by id: the lookup every show, update and delete starts with."""

from __future__ import annotations

import uuid

import asyncpg

from crmsync.application.context import Context
from crmsync.application.errors import NotFoundError
from crmsync.common.db import Conn


async def tenant_row(
    conn: Conn, ctx: Context, sql: str, row_id: uuid.UUID, missing: str
) -> asyncpg.Record:
    """The row ``sql`` gives for ``$1`` = ``row_id`` and ``$2`` = the caller's tenant, or
    NotFoundError(``missing``): another tenant's row looks the same as no row."""
    row = await conn.fetchrow(sql, row_id, ctx.tenant_id)
    if row is None:
        raise NotFoundError(missing)
    return row


async def owned(
    conn: Conn,
    ctx: Context,
    table: str,
    columns: str,
    row_id: uuid.UUID,
    *,
    what: str,
    for_update: bool = False,
) -> asyncpg.Record:
    """``columns`` of the caller's row ``row_id`` in ``table`` (locked ``for_update``), or
    NotFoundError("no {what} {row_id}"). ``table`` and ``columns`` are the caller's
    constants, never input."""
    lock = " FOR UPDATE" if for_update else ""
    sql = f"SELECT {columns} FROM {table} WHERE id = $1 AND tenant_id = $2{lock}"  # noqa: S608
    return await tenant_row(conn, ctx, sql, row_id, f"no {what} {row_id}")
