"""Periodic upkeep: forget processed event ids older than the dedup retention, prune the
sync log past its retention, and keep the dead-letter depth gauge current.

Deleting in small chunks keeps each transaction short, so pruning never holds locks
the apply step waits on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

import asyncpg

from crmsync.common.accounting import PRUNE_INBOUND_SKIPS_SQL, prune_event_rows_sql
from crmsync.common.faults import describe, is_transient
from crmsync.common.kafka import make_admin, record_lifetimes, start_with_retry
from crmsync.common.settings import ConfigError
from services.processor import metrics

log = logging.getLogger(__name__)

CHUNK = 5000
INTERVAL_SECONDS = 600.0
# The dead-letter gauge: one indexed count (dead_letters_open_idx) per round, cheap enough
# to match Prometheus's 15 s scrape interval.
GAUGE_INTERVAL_SECONDS = 15.0


async def _delete_in_chunks(pool: asyncpg.Pool, sql: str, retention_days: float) -> int:
    """Run ``sql`` ($1 retention in days, $2 the chunk; it returns how many it deleted)
    until a round deletes less than a chunk; return the total."""
    total = 0
    while True:
        deleted = int(await pool.fetchval(sql, retention_days, CHUNK))
        total += deleted
        if deleted < CHUNK:
            return total


async def prune_processed_events(pool: asyncpg.Pool, retention_days: float) -> int:
    """Delete dedup rows past retention; return how many."""
    return await _delete_in_chunks(
        pool, prune_event_rows_sql("processed_events", "processed_at"), retention_days
    )


async def prune_inbound_skips(pool: asyncpg.Pool, retention_days: float) -> int:
    """Delete the ledger's rows of skipped webhook items past the dedup retention."""
    return await _delete_in_chunks(pool, PRUNE_INBOUND_SKIPS_SQL, retention_days)


async def prune_sync_log(pool: asyncpg.Pool, retention_days: float) -> int:
    """Delete sync_log rows past retention, oldest first; return how many.

    sync_log has no index on created_at (one more index per change written, for a
    housekeeping query): its ids follow insertion, so each round takes the lowest ids by
    the primary key and deletes those past retention. A round that finds younger rows
    among them stops; rows a little out of order go in a later run.
    """
    return await _delete_in_chunks(
        pool,
        """
        WITH first AS (SELECT id FROM sync_log ORDER BY id LIMIT $2),
        gone AS (
            DELETE FROM sync_log s USING first
             WHERE s.id = first.id
               AND s.created_at < now() - make_interval(secs => $1 * 86400)
            RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        retention_days,
    )


async def count_dead_letters(pool: asyncpg.Pool) -> dict[str, int]:
    """Open (neither redriven nor discarded) dead letters per stage, every stage present."""
    rows = await pool.fetch(
        """
        SELECT stage, count(*) AS open FROM dead_letters
         WHERE redriven_at IS NULL AND discarded_at IS NULL
         GROUP BY stage
        """
    )
    found = {r["stage"]: int(r["open"]) for r in rows}
    return {stage: found.get(stage, 0) for stage in metrics.DEAD_LETTER_STAGES}


async def run_housekeeping(
    pool: asyncpg.Pool,
    retention_days: float,
    sync_log_retention_days: float,
    *,
    gauge_interval: float = GAUGE_INTERVAL_SECONDS,
) -> None:
    # Every processor worker runs this; each reports the same table-wide figures, which
    # dashboards and alerts read with max().
    pruned_at: float | None = None
    while True:
        try:
            for stage, count in (await count_dead_letters(pool)).items():
                metrics.DEAD_LETTERS_OPEN.labels(stage).set(count)
            if pruned_at is None or time.monotonic() - pruned_at >= INTERVAL_SECONDS:
                pruned_at = time.monotonic()
                pruned = await prune_processed_events(pool, retention_days)
                if pruned:
                    log.info("pruned %d processed event ids past retention", pruned)
                pruned = await prune_inbound_skips(pool, retention_days)
                if pruned:
                    log.info("pruned %d skipped webhook items past retention", pruned)
                pruned = await prune_sync_log(pool, sync_log_retention_days)
                if pruned:
                    log.info("pruned %d sync log rows past retention", pruned)
        except Exception as exc:
            # Skipping a round is harmless; anything but an outage goes to the supervisor.
            if not is_transient(exc):
                raise
            log.warning("housekeeping skipped, postgres unavailable: %s", describe(exc))
        await asyncio.sleep(gauge_interval)


def dedup_retention_problem(
    retention_days: float, lifetimes: Mapping[str, float | None]
) -> str | None:
    """Why dedup rows would be pruned before a record they guard leaves Kafka, or None.

    A replay (``POST /v1/replay``) or a consumer group whose offsets expired re-reads
    records as old as the topic keeps them; a record whose dedup row is gone by then is
    applied a second time.
    """
    retention = retention_days * 86_400
    forever = sorted(name for name, seconds in lifetimes.items() if seconds is None)
    if forever:
        return (
            f"{', '.join(forever)} keep records for ever (retention.ms -1 or compacted), so no"
            " dedup retention covers a replay; give the topics a retention.ms"
        )
    finite = {name: seconds for name, seconds in lifetimes.items() if seconds is not None}
    if not finite:
        return None
    name = max(finite, key=finite.__getitem__)
    seconds = finite[name]
    if retention > seconds:
        return None
    return (
        f"{retention_days:g} days do not exceed the {seconds / 86_400:g} days a record can stay"
        f" in {name} (retention.ms + segment.ms); set more days, or lower the topic's"
        " retention.ms or segment.ms"
    )


async def check_dedup_retention(
    retention_days: float,
    bootstrap_servers: str,
    topic_names: Sequence[str],
    *,
    within_seconds: float,
) -> None:
    """Refuse to start (ConfigError) when dedup rows would not outlive the records."""
    admin = make_admin(bootstrap_servers)
    await start_with_retry(admin.start, "processor", within_seconds=within_seconds, log=log)
    try:
        lifetimes = await record_lifetimes(admin, topic_names)
    finally:
        await admin.close()
    problem = dedup_retention_problem(retention_days, lifetimes)
    if problem is not None:
        raise ConfigError(f"CRMSYNC_PROCESSOR_DEDUP_RETENTION_DAYS: {problem}")
