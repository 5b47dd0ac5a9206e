"""The push queue in Postgres: which connections a change goes to, and the rows that
carry each push through its attempts.

A records.changed event becomes one push_jobs row per target connection, written before
the Kafka offset is committed: a crash after the commit finds the rows, a crash before
it re-reads the event and the upsert changes nothing. Rows are claimed with a lease
(SKIP LOCKED), so several outbound workers share the queue and a crashed worker's claims
come back after the lease.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import asyncpg

from connectors.runtime import ConnectionInfo, tenant_connections
from crmsync.common.db import Conn
from crmsync.common.pushes import Push, queue_pushes
from schemas.records import CanonicalRecord

# Connection rows are re-read after this long: settings changes apply within seconds.
CONNECTIONS_TTL_SECONDS = 5.0


def pushes_to(info: ConnectionInfo, entity_type: str) -> bool:
    """Whether ``info`` receives ``entity_type`` changes (settings: direction, entity_types)."""
    return info.syncs("out", entity_type)


class Router:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: dict[uuid.UUID, tuple[float, list[ConnectionInfo]]] = {}

    async def connections(self, tenant_id: uuid.UUID) -> list[ConnectionInfo]:
        cached = self._cache.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CONNECTIONS_TTL_SECONDS:
            return cached[1]
        infos = await tenant_connections(self.pool, tenant_id)
        self._cache[tenant_id] = (now, infos)
        return infos

    async def targets(self, record: CanonicalRecord) -> list[ConnectionInfo]:
        """Every connection the change goes to: never the one it came from."""
        return [
            info
            for info in await self.connections(record.tenant_id)
            if info.id != record.origin_connection_id and pushes_to(info, record.entity_type)
        ]


async def enqueue(
    conn: Conn | asyncpg.Pool,
    rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, uuid.UUID, int, uuid.UUID, datetime]],
) -> None:
    """Queue pushes (tenant, connection, entity type, entity id, version, change id,
    committed at). An older version never lowers a pending row; backoff is kept."""
    await queue_pushes(conn, [Push(*row) for row in rows])


@dataclass(frozen=True)
class Job:
    id: int
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    entity_type: str
    entity_id: uuid.UUID
    version: int
    change_id: uuid.UUID | None
    committed_at: datetime
    attempts: int


_JOB_FIELDS = tuple(Job.__dataclass_fields__)


class Claimed(NamedTuple):
    jobs: list[Job]
    # Seconds until the next row not claimed here is due (0: one is due now, e.g. one that
    # another worker is claiming); None: the queue holds nothing else.
    next_due_seconds: float | None


async def claim(pool: asyncpg.Pool, limit: int, lease_seconds: float) -> Claimed:
    """Up to ``limit`` due jobs, leased: nobody else takes them until the lease ends; and
    when the next other row is due, so the worker knows how long it may sleep without a
    second query."""
    rows = await pool.fetch(
        """
        WITH due AS (
            SELECT id FROM push_jobs
             WHERE next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
               FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE push_jobs j
               SET next_attempt_at = now() + make_interval(secs => $2)
              FROM due
             WHERE j.id = due.id
            RETURNING j.id, j.tenant_id, j.connection_id, j.entity_type, j.entity_id,
                      j.version, j.change_id, j.committed_at, j.attempts
        ), later AS (
            -- The statement's snapshot shows the claimed rows as they were (due):
            -- leave them out.
            SELECT extract(epoch FROM min(next_attempt_at) - now()) AS next_due
              FROM push_jobs
             WHERE id NOT IN (SELECT id FROM due)
        )
        SELECT c.*, later.next_due FROM later LEFT JOIN claimed c ON true
        """,
        limit,
        lease_seconds,
    )
    jobs = [Job(**{f: r[f] for f in _JOB_FIELDS}) for r in rows if r["id"] is not None]
    due = rows[0]["next_due"] if rows else None
    return Claimed(jobs, None if due is None else max(0.0, float(due)))


# The end of a push, as the tail of a statement whose $1 is the job's id and $2 the version
# pushed: the row goes unless a newer version came meanwhile; that row is then due at once
# (its lease would otherwise hold the newer version back). Returns the re-armed row's id.
FINISH_SQL = """
    gone AS (DELETE FROM push_jobs WHERE id = $1 AND version = $2 RETURNING id)
    UPDATE push_jobs SET next_attempt_at = now(), attempts = 0, last_error = NULL,
                         updated_at = now()
     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM gone)
    RETURNING id
"""


async def finish(pool: asyncpg.Pool, job: Job) -> bool:
    """The push of ``job.version`` is done: remove the row unless a newer version came
    meanwhile, which is then due at once (and True is returned)."""
    rearmed = await pool.fetchval(f"WITH {FINISH_SQL}", job.id, job.version)
    return rearmed is not None


async def reschedule(
    pool: Conn | asyncpg.Pool, job: Job, delay_seconds: float, error: str, *, count_attempt: bool
) -> None:
    await pool.execute(
        """
        UPDATE push_jobs
           SET next_attempt_at = now() + make_interval(secs => $2),
               attempts = attempts + $3, last_error = $4, updated_at = now()
         WHERE id = $1
        """,
        job.id,
        delay_seconds,
        1 if count_attempt else 0,
        error[:2000],
    )


async def queue_stats(pool: asyncpg.Pool) -> tuple[int, float]:
    row = await pool.fetchrow(
        "SELECT count(*) AS n, extract(epoch FROM now() - min(committed_at)) AS age FROM push_jobs"
    )
    assert row is not None  # noqa: S101 - an aggregate always returns a row
    return int(row["n"]), float(row["age"] or 0.0)
