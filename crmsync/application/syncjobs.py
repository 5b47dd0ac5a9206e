"""Sync jobs (backfill, reconciliation): requested here as ``pending`` rows, claimed and
run by the runner in the outbound service (crmsync.application.sync), which writes progress back
into the row."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from crmsync.application import connections
from crmsync.application.audit_trail import audited
from crmsync.application.connection_runtime import load_connection
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, InvalidError
from crmsync.application.models import Page, SyncJobCreate, SyncJobOut, SyncJobQuery
from crmsync.application.paging import Listing
from crmsync.application.rows import owned
from crmsync.application.sync import jobs
from crmsync.application.sync.runner import SyncFailedError, runnable_types
from crmsync.application.sync.schedule import ReconcilePolicy
from crmsync.common.connections import next_modified_since
from crmsync.common.db import Conn

_COLUMNS = """
    id, connection_id, kind, entity_types, status, modified_since, checkpoint, records_seen,
    records_changed, records_deleted, error, cancel_requested, requested_by, created_at,
    started_at, updated_at, finished_at
"""


def _progress(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Per entity type what an operator reads: done and seen, not the provider's cursor."""
    out: dict[str, Any] = {}
    for entity_type, state in checkpoint.items():
        if isinstance(state, dict):
            out[entity_type] = {k: v for k, v in state.items() if k in ("done", "seen")}
    return out


def _out(row: asyncpg.Record) -> SyncJobOut:
    values = dict(row)
    values["progress"] = _progress(values.pop("checkpoint") or {})
    return SyncJobOut(**values)


@audited("sync_job.create")
async def create(conn: Conn, ctx: Context, body: SyncJobCreate) -> SyncJobOut:
    await connections.require(conn, ctx, body.connection)
    info = await load_connection(conn, body.connection, tenant_id=ctx.tenant_id)
    assert info is not None  # noqa: S101 - require() found it
    try:
        entity_types = runnable_types(info, body.entity_types)
    except SyncFailedError as exc:
        loc = "/body/entity_types" if body.entity_types else "/body/connection"
        raise InvalidError("nothing to sync", loc=loc, msg=str(exc)) from None
    modified_since = body.modified_since
    if body.kind == "reconcile" and modified_since is None:
        modified_since = await next_modified_since(
            conn, body.connection, ReconcilePolicy().overlap_seconds, tenant_id=ctx.tenant_id
        )
    job_id, queued = await jobs.queue(
        conn,
        tenant_id=ctx.tenant_id,
        connection_id=body.connection,
        kind=body.kind,
        entity_types=entity_types,
        modified_since=modified_since,
        requested_by=ctx.actor,
    )
    if not queued:
        raise ConflictError(
            f"a {body.kind} of this connection is already pending or running",
            existing_job_id=str(job_id) if job_id else None,
        )
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM sync_jobs WHERE id = $1 AND tenant_id = $2",  # noqa: S608
        job_id,
        ctx.tenant_id,
    )
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns the row
    return _out(row)


async def list_(conn: Conn, ctx: Context, query: SyncJobQuery) -> Page[SyncJobOut]:
    """Newest first."""
    if query.connection is not None:
        await connections.require(conn, ctx, query.connection)
    listing = Listing(_COLUMNS, "sync_jobs", newest_first=True).where(
        "tenant_id = {}", ctx.tenant_id
    )
    listing.match(connection_id=query.connection, status=query.status, kind=query.kind)
    return await listing.page(conn, query.cursor, query.limit, _out)


async def get(conn: Conn, ctx: Context, job_id: uuid.UUID) -> SyncJobOut:
    row = await owned(conn, ctx, "sync_jobs", _COLUMNS, job_id, what="sync job")
    return _out(row)


@audited("sync_job.cancel")
async def cancel(conn: Conn, ctx: Context, job_id: uuid.UUID) -> SyncJobOut:
    """A pending job is cancelled at once; a running one is asked to stop (its runner
    checks ``cancel_requested`` between pages). A finished job stays as it is."""
    row = await conn.fetchrow(
        f"""
        UPDATE sync_jobs
           SET cancel_requested = true,
               status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,
               finished_at = CASE WHEN status = 'pending' THEN now() ELSE finished_at END,
               updated_at = now()
         WHERE id = $1 AND tenant_id = $2 AND status IN ('pending', 'running')
        RETURNING {_COLUMNS}
        """,  # noqa: S608
        job_id,
        ctx.tenant_id,
    )
    if row is None:
        job = await get(conn, ctx, job_id)
        raise ConflictError(f"the sync job already finished ({job.status})", job_status=job.status)
    return _out(row)
