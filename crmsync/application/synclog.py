"""The sync log: every inbound and outbound event per connection, and counts per outcome."""

from __future__ import annotations

from datetime import datetime, timedelta

from crmsync.application import connections, pagination
from crmsync.application.context import Context
from crmsync.application.models import (
    OutcomeCount,
    Page,
    SyncLogEntry,
    SyncLogQuery,
    SyncLogSummary,
    SyncLogSummaryQuery,
)
from crmsync.application.paging import page
from crmsync.common.db import Conn

DEFAULT_SUMMARY_WINDOW = timedelta(hours=24)


async def list_(conn: Conn, ctx: Context, query: SyncLogQuery) -> Page[SyncLogEntry]:
    """Newest first."""
    if query.connection is not None:
        await connections.require(conn, ctx, query.connection)
    before = pagination.decode(query.cursor, int)[0] if query.cursor else None
    rows = await conn.fetch(
        """
        SELECT id, connection_id, direction, entity_type, entity_id, external_id, outcome,
               latency_ms, error, created_at, rule
          FROM sync_log
         WHERE tenant_id = $1
           AND ($2::uuid IS NULL OR connection_id = $2)
           AND ($3::text IS NULL OR direction = $3)
           AND ($4::text IS NULL OR outcome = $4)
           AND ($5::text IS NULL OR entity_type = $5)
           AND ($6::timestamptz IS NULL OR created_at >= $6)
           AND ($7::bigint IS NULL OR id < $7)
           AND ($8::uuid IS NULL OR entity_id = $8)
           AND ($10::text IS NULL OR rule = $10)
         ORDER BY id DESC
         LIMIT $9
        """,
        ctx.tenant_id,
        query.connection,
        query.direction,
        query.outcome,
        query.entity_type,
        query.since,
        before,
        query.entity_id,
        query.limit + 1,
        query.rule,
    )
    return page([SyncLogEntry(**dict(r)) for r in rows], query.limit, lambda e: (e.id,))


async def summary(
    conn: Conn, ctx: Context, query: SyncLogSummaryQuery, *, now: datetime
) -> SyncLogSummary:
    if query.connection is not None:
        await connections.require(conn, ctx, query.connection)
    since = query.since or now - DEFAULT_SUMMARY_WINDOW
    rows = await conn.fetch(
        """
        SELECT direction, outcome, count(*) AS count,
               round(percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms))::bigint
                 AS p95_latency_ms
          FROM sync_log
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR connection_id = $2)
           AND created_at >= $3
         GROUP BY direction, outcome
         ORDER BY direction, outcome
        """,
        ctx.tenant_id,
        query.connection,
        since,
    )
    return SyncLogSummary(since=since, outcomes=[OutcomeCount(**dict(r)) for r in rows])
