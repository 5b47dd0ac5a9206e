"""sync_jobs rows: starting, claiming, checkpointing and finishing backfills and
reconciliation runs.

A run is owned by whoever holds its lease (the CLI, or the outbound service's runner)
and renews it with every checkpoint. A lease that ran out, or one held by a process of
this host that no longer exists (a killed ``crmsync backfill``), can be taken over: the
new owner continues from the checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

from connectors.spec import EntityType
from crmsync.common.connections import mark_reconciled
from crmsync.common.db import Conn
from schemas.errors import RefuseInput, Stop

Kind = Literal["backfill", "reconcile", "full_reconcile"]
KINDS: tuple[Kind, ...] = ("backfill", "reconcile", "full_reconcile")
Status = Literal["pending", "running", "succeeded", "failed", "cancelled"]
ACTIVE = ("pending", "running")


def owner_id(role: str) -> str:
    """``role:host:pid:nonce``: enough to tell whether the owner is still alive."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def owner_is_gone(owner: str | None) -> bool:
    """True when ``owner`` ran on this host and its process no longer exists."""
    if not owner:
        return True
    parts = owner.split(":")
    if len(parts) != 4 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class EntityProgress:
    cursor: str | None = None
    done: bool = False
    seen: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "done": self.done, "seen": self.seen}


@dataclass
class SyncJob:
    id: uuid.UUID
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    kind: Kind
    entity_types: tuple[EntityType, ...]
    status: Status
    modified_since: datetime | None
    started_at: datetime | None
    records_seen: int
    records_changed: int
    records_deleted: int
    progress: dict[str, EntityProgress] = field(default_factory=dict)
    cancel_requested: bool = False
    # True when this owner took the run over from an earlier one (it resumes).
    resumed: bool = False

    @classmethod
    def from_row(cls, row: asyncpg.Record, *, resumed: bool = False) -> SyncJob:
        # The pool decodes jsonb; a string is a row written before migration 0011.
        raw = row["checkpoint"]
        checkpoint = json.loads(raw) if isinstance(raw, str) else (raw or {})
        return cls(
            id=row["id"],
            tenant_id=row["tenant_id"],
            connection_id=row["connection_id"],
            kind=row["kind"],
            entity_types=tuple(row["entity_types"]),
            status=row["status"],
            modified_since=row["modified_since"],
            started_at=row["started_at"],
            records_seen=row["records_seen"],
            records_changed=row["records_changed"],
            records_deleted=row["records_deleted"],
            progress={
                t: EntityProgress(**checkpoint.get(t, {}))
                for t in row["entity_types"]  # one entry per type, in order
            },
            cancel_requested=row["cancel_requested"],
            resumed=resumed,
        )

    def checkpoint_json(self) -> dict[str, Any]:
        """The checkpoint as an object: the pool's jsonb codec encodes it once (a string
        here was stored as a JSON string inside jsonb, which readers could not use)."""
        return {t: p.as_json() for t, p in self.progress.items()}


class JobBusyError(RefuseInput):
    """Another live process holds this connection's run of that kind."""

    def __init__(self, job_id: uuid.UUID, owner: str | None) -> None:
        super().__init__(f"sync job {job_id} is running in {owner}; wait for it or cancel it")
        self.job_id = job_id
        self.owner = owner


class JobCancelledError(Stop):
    """An operator asked the run to stop."""


_RETURNING = """
    id, tenant_id, connection_id, kind, entity_types, status, modified_since, started_at,
    records_seen, records_changed, records_deleted, checkpoint, cancel_requested,
    lease_owner, lease_expires_at
"""


async def start(
    pool: asyncpg.Pool,
    *,
    connection_id: uuid.UUID,
    tenant_id: uuid.UUID,
    kind: Kind,
    entity_types: Sequence[EntityType],
    owner: str,
    lease_seconds: float,
    modified_since: datetime | None = None,
    requested_by: str | None = None,
) -> SyncJob:
    """Create a run and hold it, or take over the connection's active run of this kind
    when its owner is gone (a killed backfill resumes from its checkpoint).

    Raises JobBusyError when a live owner holds it.
    """
    async with pool.acquire() as conn, conn.transaction():
        # Serialise starters of the same connection + kind (the unique index would make
        # the loser fail; this makes it find the winner's row instead).
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))", f"sync:{connection_id}:{kind}"
        )
        row = await conn.fetchrow(
            f"""
            SELECT {_RETURNING}, lease_expires_at < now() AS expired
              FROM sync_jobs
             WHERE connection_id = $1 AND kind = $2 AND status IN ('pending', 'running')
             FOR UPDATE
            """,  # noqa: S608 - constant column list
            connection_id,
            kind,
        )
        if row is not None:
            holder = row["lease_owner"]
            if holder is not None and not row["expired"] and not owner_is_gone(holder):
                raise JobBusyError(row["id"], holder)
            taken = await _take(conn, row["id"], owner, lease_seconds)
            assert taken is not None  # noqa: S101 - the row is locked by this transaction
            return SyncJob.from_row(taken, resumed=row["started_at"] is not None)
        created = await conn.fetchrow(
            f"""
            INSERT INTO sync_jobs (tenant_id, connection_id, kind, entity_types, status,
                                   modified_since, lease_owner, lease_expires_at,
                                   started_at, requested_by)
            VALUES ($1, $2, $3, $4, 'running', $5, $6, now() + make_interval(secs => $7),
                    now(), $8)
         RETURNING {_RETURNING}
            """,  # noqa: S608
            tenant_id,
            connection_id,
            kind,
            list(entity_types),
            modified_since,
            owner,
            lease_seconds,
            requested_by,
        )
        assert created is not None  # noqa: S101 - INSERT … RETURNING returns the row
        return SyncJob.from_row(created)


async def _take(
    conn: Conn | asyncpg.Pool,
    job_id: uuid.UUID,
    owner: str,
    lease_seconds: float,
    *,
    seen: asyncpg.Record | None = None,
) -> asyncpg.Record | None:
    """Hold the run for ``owner``: running, leased for ``lease_seconds``. With ``seen``, only
    while its status and owner are still the ones seen (None: another runner was faster)."""
    guard = " AND status = $4 AND lease_owner IS NOT DISTINCT FROM $5" if seen is not None else ""
    still: tuple[Any, ...] = (seen["status"], seen["lease_owner"]) if seen is not None else ()
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        UPDATE sync_jobs
           SET status = 'running', lease_owner = $2,
               lease_expires_at = now() + make_interval(secs => $3),
               started_at = coalesce(started_at, now()), updated_at = now()
         WHERE id = $1{guard}
     RETURNING {_RETURNING}
        """,  # noqa: S608 - constant column list and guard
        job_id,
        owner,
        lease_seconds,
        *still,
    )
    return row


async def claim_next(pool: asyncpg.Pool, *, owner: str, lease_seconds: float) -> SyncJob | None:
    """The oldest pending run, or a running one whose owner is gone or whose lease ran
    out, now held by ``owner``; None when there is nothing to run."""
    rows = await pool.fetch(
        """
        SELECT id, status, lease_owner, coalesce(lease_expires_at < now(), true) AS expired
          FROM sync_jobs
         WHERE status IN ('pending', 'running')
         ORDER BY created_at
         LIMIT 50
        """
    )
    for c in rows:
        if c["status"] == "running" and not (c["expired"] or owner_is_gone(c["lease_owner"])):
            continue
        row = await _take(pool, c["id"], owner, lease_seconds, seen=c)
        if row is not None:  # else another runner was faster
            return SyncJob.from_row(row, resumed=c["status"] == "running")
    return None


async def checkpoint(
    conn: asyncpg.Connection | asyncpg.Pool, job: SyncJob, *, owner: str, lease_seconds: float
) -> None:
    """Save progress and renew the lease; raise JobCancelledError when asked to stop.

    A run whose lease was taken over (this owner stalled past it) stops too: two owners
    must never page the same run.
    """
    row = await conn.fetchrow(
        """
        UPDATE sync_jobs
           SET checkpoint = $3::jsonb, records_seen = $4, records_changed = $5,
               records_deleted = $6, lease_expires_at = now() + make_interval(secs => $7),
               updated_at = now()
         WHERE id = $1 AND lease_owner = $2
     RETURNING cancel_requested
        """,
        job.id,
        owner,
        job.checkpoint_json(),
        job.records_seen,
        job.records_changed,
        job.records_deleted,
        lease_seconds,
    )
    if row is None:
        raise JobCancelledError(f"sync job {job.id} is no longer held by {owner}")
    if row["cancel_requested"]:
        raise JobCancelledError(f"sync job {job.id} was cancelled")


async def finish(
    pool: asyncpg.Pool,
    job: SyncJob,
    *,
    owner: str,
    status: Status,
    error: str | None = None,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        updated = await conn.fetchval(
            """
            UPDATE sync_jobs
               SET status = $3, error = $4, checkpoint = $5::jsonb, records_seen = $6,
                   records_changed = $7, records_deleted = $8, finished_at = now(),
                   updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
             WHERE id = $1 AND lease_owner = $2
         RETURNING id
            """,
            job.id,
            owner,
            status,
            error,
            job.checkpoint_json(),
            job.records_seen,
            job.records_changed,
            job.records_deleted,
        )
        if updated is None:
            return
        await conn.execute("DELETE FROM sync_job_seen WHERE job_id = $1", job.id)
        if status == "succeeded":
            # Every run lists from where the previous one started (modified-since polls
            # overlap a little, see application.sync.schedule); only a full one finds deletes.
            await mark_reconciled(
                conn,
                job.connection_id,
                tenant_id=job.tenant_id,
                started_at=job.started_at,
                full=job.kind == "full_reconcile",
            )


async def release(pool: asyncpg.Pool, job_id: uuid.UUID, *, owner: str) -> None:
    """Give a run up without ending it (this process is stopping): the next runner, or the
    next ``crmsync backfill`` of that connection, resumes it from its checkpoint at once."""
    await pool.execute(
        """
        UPDATE sync_jobs SET lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
         WHERE id = $1 AND lease_owner = $2 AND status = 'running'
        """,
        job_id,
        owner,
    )


async def queue(
    pool: Conn | asyncpg.Pool,
    *,
    tenant_id: uuid.UUID,
    connection_id: uuid.UUID,
    kind: Kind,
    entity_types: Sequence[EntityType],
    modified_since: datetime | None,
    requested_by: str,
) -> tuple[uuid.UUID, bool]:
    """A pending run for a runner to claim: (its id, True), or (the id of the run of that
    kind already pending or running for the connection, False)."""
    job_id = await pool.fetchval(
        """
        INSERT INTO sync_jobs (tenant_id, connection_id, kind, entity_types, modified_since,
                               requested_by)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (connection_id, kind) WHERE status IN ('pending', 'running') DO NOTHING
        RETURNING id
        """,
        tenant_id,
        connection_id,
        kind,
        list(entity_types),
        modified_since,
        requested_by,
    )
    if job_id is not None:
        return job_id, True
    active = await pool.fetchval(
        """
        SELECT id FROM sync_jobs
         WHERE connection_id = $1 AND kind = $2 AND status IN ('pending', 'running')
        """,
        connection_id,
        kind,
    )
    return active, False
