"""The push queue in Postgres (push_jobs): the one data-access module for it.

push_jobs holds one row per (connection, record) whose version only rises (migration
0004): "bring this connection up to this version of the record". Outbound routing, the
processor (a system whose echo shows it fell behind) and the admin API (redriving a
failed push) all queue through :func:`queue_pushes`, so the rule lives once. Rows are
claimed with a lease (SKIP LOCKED), so several outbound workers share the queue and a
crashed worker's claims come back after the lease.

The queue is shared by every tenant: claiming, finishing and rescheduling go by the row's
own id, which carries its tenant for whoever runs the push.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from crmsync.common.db import Conn


class Push(NamedTuple):
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    entity_type: str
    entity_id: uuid.UUID
    version: int
    change_id: uuid.UUID | None = None
    committed_at: datetime | None = None  # None: now


async def not_parked(conn: Conn | asyncpg.Pool, pushes: Sequence[Push]) -> list[Push]:
    """``pushes`` less those whose version (or a later one) the target already parked as
    an outbound dead letter not redriven (for any reason: a refusal by its rules is the
    case seen). What it refused is refused again, and a refusal that wrote what it could
    makes the target report that state again, an echo that would queue the same version
    again: a loop of one dead letter per poll. Redriving the dead letter pushes it again.
    Reads only these records' parked pushes, by dead_letters_parked_push_idx (migration
    0024), not every parked push of their connections."""
    if not pushes:
        return []
    keys = sorted({(p.connection_id, p.entity_id) for p in pushes})
    rows = await conn.fetch(
        """
        SELECT d.payload
          FROM dead_letters d
          JOIN unnest($1::uuid[], $2::uuid[]) AS k(c, e)
            ON d.connection_id = k.c AND dead_letter_entity_id(d.payload) = k.e
         WHERE d.stage = 'outbound' AND d.redriven_at IS NULL
        """,
        [c for c, _ in keys],
        [e for _, e in keys],
    )
    parked: dict[tuple[str, str], int] = {}
    for row in rows:
        try:
            value = json.loads(row["payload"])
            key = (str(value["connection_id"]), str(value["entity_id"]))
            parked[key] = max(parked.get(key, 0), int(value["version"]))
        except (ValueError, KeyError, TypeError):
            continue  # not a push's payload
    return [
        p for p in pushes if parked.get((str(p.connection_id), str(p.entity_id)), 0) < p.version
    ]


def _lock_order(key: tuple[uuid.UUID, str, uuid.UUID]) -> tuple[str, str, str]:
    connection_id, entity_type, entity_id = key
    return (str(connection_id), entity_type, str(entity_id))


async def queue_pushes(
    conn: Conn | asyncpg.Pool,
    pushes: Sequence[Push],
    *,
    due_now: bool = False,
    reset_attempts: bool = False,
) -> None:
    """Queue pushes; a pending row's version is raised, never lowered.

    By default a pending row keeps its backoff (a newer version does not hammer a failing
    provider). ``due_now`` makes it due at once; ``reset_attempts`` also forgets its failed
    attempts (an operator's redrive).
    """
    if not pushes:
        return
    # One row per key in one statement: ON CONFLICT cannot touch a row twice.
    newest: dict[tuple[uuid.UUID, str, uuid.UUID], Push] = {}
    for push in pushes:
        key = (push.connection_id, push.entity_type, push.entity_id)
        if key not in newest or newest[key].version < push.version:
            newest[key] = push
    # Rows are locked in one order, the key's, whoever queues them: two enqueues of the same
    # rows in different orders (a change's targets, a batch's echoes, a redrive) would
    # otherwise each hold a row the other waits for, and one would fail as a deadlock.
    ordered = [newest[key] for key in sorted(newest, key=_lock_order)]
    columns: list[list[Any]] = [list(c) for c in zip(*ordered, strict=True)]
    await conn.execute(
        """
        INSERT INTO push_jobs AS j (tenant_id, connection_id, entity_type, entity_id, version,
                                    change_id, committed_at)
        SELECT t, c, e, i, v, ch, coalesce(at, now())
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int[],
                      $6::uuid[], $7::timestamptz[]) WITH ORDINALITY AS u(t, c, e, i, v, ch, at, n)
         ORDER BY n
        ON CONFLICT (connection_id, entity_type, entity_id) DO UPDATE
           SET version = greatest(j.version, EXCLUDED.version),
               change_id = CASE WHEN EXCLUDED.version > j.version
                                THEN EXCLUDED.change_id ELSE j.change_id END,
               committed_at = CASE WHEN EXCLUDED.version > j.version
                                   THEN EXCLUDED.committed_at ELSE j.committed_at END,
               next_attempt_at = CASE WHEN $8 THEN least(j.next_attempt_at, now())
                                      ELSE j.next_attempt_at END,
               attempts = CASE WHEN $9 THEN 0 ELSE j.attempts END,
               updated_at = now()
         WHERE j.version < EXCLUDED.version OR $8 OR $9
        """,
        *columns,
        due_now,
        reset_attempts,
    )


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


def finish_sql(*, after: str | None = None) -> str:
    """The end of a push, as the tail of a statement whose $1 is the job's id and $2 the
    version pushed: the row goes unless a newer version came meanwhile; that row is then due
    at once (its lease would otherwise hold the newer version back). Returns the re-armed
    row's id.

    ``after``: the name of a CTE of the same statement that must have run before the job's
    row is touched. Reading its rows in an uncorrelated EXISTS makes it an InitPlan, which
    PostgreSQL runs as a one-time filter before the scan of push_jobs starts (a CTE nobody
    reads runs last instead): the pusher's bookkeeping takes the link's row first that way
    (services.outbound.pusher, the comment above _LINK_COLUMNS)."""
    gate = "" if after is None else f" AND EXISTS (SELECT FROM {after})"
    return f"""
    gone AS (DELETE FROM push_jobs WHERE id = $1 AND version = $2{gate} RETURNING id)
    UPDATE push_jobs SET next_attempt_at = now(), attempts = 0, last_error = NULL,
                         updated_at = now()
     WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM gone)
    RETURNING id
"""  # noqa: S608 - ``after`` is a CTE name of our own SQL


FINISH_SQL = finish_sql()


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


async def waiting_on_breaker(
    conn: Conn, tenant_ids: list[uuid.UUID], now: datetime
) -> list[asyncpg.Record]:
    """(tenant_id, connection_id) of the connections whose pushes wait on an open circuit
    breaker now: the outbound service reschedules a refused push with ``circuit_open``."""
    return await conn.fetch(
        """
        SELECT DISTINCT tenant_id, connection_id FROM push_jobs
         WHERE tenant_id = ANY ($1::uuid[])
           AND last_error LIKE 'circuit_open%' AND next_attempt_at > $2
        """,
        tenant_ids,
        now,
    )


# The error a push of an outbound-paused connection is rescheduled with (outbound's pusher).
PAUSED = "paused"


async def wake_paused(
    conn: Conn | asyncpg.Pool, tenant_id: uuid.UUID, connection_id: uuid.UUID | None
) -> int:
    """A pause ended: the pushes it held back (of one connection, or of every connection
    of the tenant) are due now, in their order. Returns how many."""
    # Rows locked in key order, as queue_pushes locks them (_lock_order; "C" so text sorts
    # as Python sorts it): an UPDATE in scan order, meeting an enqueue of the same rows,
    # would each hold what the other waits for, and one would fail as a deadlock.
    status = await conn.execute(
        """
        WITH held AS (
            SELECT id FROM push_jobs
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR connection_id = $2)
               AND last_error LIKE 'paused%' AND next_attempt_at > now()
             ORDER BY connection_id, entity_type COLLATE "C", entity_id
               FOR UPDATE
        )
        UPDATE push_jobs j SET next_attempt_at = now(), updated_at = now()
          FROM held
         WHERE j.id = held.id AND j.last_error LIKE 'paused%' AND j.next_attempt_at > now()
        """,
        tenant_id,
        connection_id,
    )
    return int(status.split()[-1])
