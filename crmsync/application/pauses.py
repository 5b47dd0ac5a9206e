"""Pauses and freeze windows (issue 20): stop applying a connection's webhooks (inbound)
and/or pushing to it (outbound), now or in a scheduled window, for one connection or the
whole tenant.

Nothing is refused while paused. Ingest keeps verifying and accepting webhooks into
Kafka; the processor parks the changes of an inbound pause in ``waiting_changes`` and
releases them in order when it ends; outbound reschedules the pushes of an outbound pause
to its end (and ``resume`` makes them due at once). The ``pauses`` table is
infra/migrations/0015.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from crmsync.application import connections
from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, InvalidError
from crmsync.application.models import (
    Direction,
    FreezeWindowCreate,
    FreezeWindowQuery,
    Page,
    PauseOut,
    PauseRequest,
    ResumeRequest,
    ResumeResult,
)
from crmsync.application.paging import Listing
from crmsync.application.rows import tenant_row
from crmsync.common import pushes
from crmsync.common.db import Conn

_COLUMNS = """id, connection_id, inbound, outbound, starts_at, ends_at, reason, kind,
              created_by, created_at"""

# In force at $now for the connection $2 of tenant $1: its own rows and the tenant's.
IN_FORCE = """
    tenant_id = $1 AND (connection_id IS NULL OR connection_id = $2)
    AND starts_at <= $3 AND (ends_at IS NULL OR ends_at > $3)
"""


def _sides(direction: Direction) -> tuple[bool, bool]:
    return direction in ("in", "both"), direction in ("out", "both")


def _out(row: asyncpg.Record) -> PauseOut:
    return PauseOut(**dict(row))


async def in_force(
    conn: Conn, tenant_id: uuid.UUID, connection_id: uuid.UUID, now: datetime
) -> list[PauseOut]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM pauses WHERE {IN_FORCE} ORDER BY starts_at",  # noqa: S608
        tenant_id,
        connection_id,
        now,
    )
    return [_out(r) for r in rows]


async def _insert(
    conn: Conn,
    ctx: Context,
    kind: str,
    *,
    connection_id: uuid.UUID | None,
    direction: Direction,
    starts_at: datetime,
    ends_at: datetime | None,
    reason: str | None,
) -> PauseOut:
    """A pause or a freeze window (``kind``) of the connection, or of the whole tenant."""
    inbound, outbound = _sides(direction)
    row = await conn.fetchrow(
        f"""
        INSERT INTO pauses (tenant_id, connection_id, inbound, outbound, starts_at, ends_at,
                            reason, kind, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - constant columns
        ctx.tenant_id,
        connection_id,
        inbound,
        outbound,
        starts_at,
        ends_at,
        reason,
        kind,
        ctx.actor,
    )
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return _out(row)


@audited("connection.pause")
async def pause(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, body: PauseRequest, *, now: datetime
) -> PauseOut:
    """Pause the connection from now, until ``body.until`` or until resumed."""
    await connections.require(conn, ctx, connection_id)
    if body.until is not None and body.until <= now:
        raise InvalidError("until is in the past", loc="/body/until", msg="must be in the future")
    return await _insert(
        conn,
        ctx,
        "pause",
        connection_id=connection_id,
        direction=body.direction,
        starts_at=now,
        ends_at=body.until,
        reason=body.reason,
    )


@audited("connection.resume")
async def resume(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, body: ResumeRequest, *, now: datetime
) -> ResumeResult:
    """End the connection's own pauses and windows in force for ``body.direction``: a row
    that pauses the other direction too keeps pausing that one. A tenant-wide window is
    not the connection's to end (``DELETE /v1/freeze-windows/{id}`` ends it)."""
    await connections.require(conn, ctx, connection_id)
    stop_in, stop_out = _sides(body.direction)
    rows = await conn.fetch(
        f"""
        WITH hit AS (
            SELECT id, NOT ((inbound AND NOT $4) OR (outbound AND NOT $5)) AS ends
              FROM pauses
             WHERE {IN_FORCE} AND connection_id = $2 AND ((inbound AND $4) OR (outbound AND $5))
        )
        UPDATE pauses p
           SET ends_at = CASE WHEN hit.ends THEN $3 ELSE p.ends_at END,
               inbound = CASE WHEN hit.ends THEN p.inbound ELSE p.inbound AND NOT $4 END,
               outbound = CASE WHEN hit.ends THEN p.outbound ELSE p.outbound AND NOT $5 END
          FROM hit
         WHERE p.id = hit.id
        RETURNING {", ".join(f"p.{c.strip()}" for c in _COLUMNS.split(","))}
        """,  # noqa: S608 - constant columns
        ctx.tenant_id,
        connection_id,
        now,
        stop_in,
        stop_out,
    )
    if stop_out:
        await pushes.wake_paused(conn, ctx.tenant_id, connection_id)
    return ResumeResult(ended=[_out(r) for r in rows])


@audited("freeze_window.create")
async def create_window(
    conn: Conn, ctx: Context, body: FreezeWindowCreate, *, now: datetime
) -> PauseOut:
    if body.connection is not None:
        await connections.require(conn, ctx, body.connection)
    if body.ends_at <= now:
        raise InvalidError("the window is over", loc="/body/ends_at", msg="must be in the future")
    return await _insert(
        conn,
        ctx,
        "freeze_window",
        connection_id=body.connection,
        direction=body.direction,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
    )


async def list_windows(
    conn: Conn, ctx: Context, query: FreezeWindowQuery, *, now: datetime
) -> Page[PauseOut]:
    """Windows not over yet (all with ``include_past``), in the order they were made."""
    if query.connection is not None:
        await connections.require(conn, ctx, query.connection)
    listing = Listing(_COLUMNS, "pauses").where("tenant_id = {}", ctx.tenant_id)
    listing.where("kind = 'freeze_window'").match(connection_id=query.connection)
    if not query.include_past:
        listing.where("ends_at > {}", now)
    return await listing.page(conn, query.cursor, query.limit, _out)


async def _window(conn: Conn, ctx: Context, window_id: uuid.UUID) -> PauseOut:
    row = await tenant_row(
        conn,
        ctx,
        f"""
        SELECT {_COLUMNS} FROM pauses
         WHERE id = $1 AND tenant_id = $2 AND kind = 'freeze_window'
        """,  # noqa: S608 - constant columns
        window_id,
        f"no freeze window {window_id}",
    )
    return _out(row)


async def get_window(conn: Conn, ctx: Context, window_id: uuid.UUID) -> PauseOut:
    return await _window(conn, ctx, window_id)


@audited("freeze_window.delete")
async def delete_window(conn: Conn, ctx: Context, window_id: uuid.UUID, *, now: datetime) -> None:
    """A window not started yet is deleted; one in force ends now (its record stays, and
    what it held back resumes); one that is over is history (409)."""
    window = await _window(conn, ctx, window_id)
    if window.ends_at is not None and window.ends_at <= now:
        raise ConflictError("the window is over: it stays as a record of what was paused")
    if window.starts_at > now:
        await conn.execute("DELETE FROM pauses WHERE id = $1", window_id)
        return
    await conn.execute("UPDATE pauses SET ends_at = $2 WHERE id = $1", window_id, now)
    if window.outbound:
        await pushes.wake_paused(conn, ctx.tenant_id, window.connection_id)
