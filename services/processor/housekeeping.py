"""Periodic upkeep: forget processed event ids older than the dedup retention.

Deleting in small chunks keeps each transaction short, so pruning never holds locks
the apply step waits on.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from services.processor.pipeline import TRANSIENT

log = logging.getLogger(__name__)

CHUNK = 5000
INTERVAL_SECONDS = 600.0


async def prune_processed_events(pool: asyncpg.Pool, retention_days: float) -> int:
    """Delete dedup rows past retention; return how many."""
    total = 0
    while True:
        deleted = await pool.fetchval(
            """
            WITH old AS (
                SELECT connection_id, provider_event_id FROM processed_events
                 WHERE processed_at < now() - make_interval(secs => $1 * 86400)
                 LIMIT $2
            ), gone AS (
                DELETE FROM processed_events p USING old
                 WHERE p.connection_id = old.connection_id
                   AND p.provider_event_id = old.provider_event_id
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            retention_days,
            CHUNK,
        )
        total += int(deleted)
        if deleted < CHUNK:
            return total


async def run_housekeeping(pool: asyncpg.Pool, retention_days: float) -> None:
    while True:
        try:
            pruned = await prune_processed_events(pool, retention_days)
            if pruned:
                log.info("pruned %d processed event ids past retention", pruned)
        except TRANSIENT as exc:
            log.warning("housekeeping skipped, postgres unavailable: %s", exc)
        await asyncio.sleep(INTERVAL_SECONDS)
