"""The push queue's one write: "bring this connection up to this version of the record".

push_jobs holds one row per (connection, record) whose version only rises (migration
0004). Outbound routing, the processor (a system whose echo shows it fell behind) and
the admin API (redriving a failed push) all queue through here, so the rule lives once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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
    columns: list[list[Any]] = [list(c) for c in zip(*newest.values(), strict=True)]
    await conn.execute(
        """
        INSERT INTO push_jobs AS j (tenant_id, connection_id, entity_type, entity_id, version,
                                    change_id, committed_at)
        SELECT t, c, e, i, v, ch, coalesce(at, now())
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int[],
                      $6::uuid[], $7::timestamptz[]) AS u(t, c, e, i, v, ch, at)
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
