"""The outbox relay: committed changes to ``records.changed``, in commit order, never lost.

Rows are published and then deleted, in one Postgres transaction held across the Kafka
acknowledgement: a crash in between leaves them in place, so they are published again
on restart (consumers deduplicate by change id). ``records.changed`` is the record of
what was published; keeping rows (or marking them) would write each one twice. A
transaction-scoped advisory lock lets exactly one relay publish at a time however many
processors run, which keeps each entity's versions in order. NOTIFY from the applying
transaction wakes the relay at once; a short poll covers a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from crmsync.common.faults import Backoff, describe, is_transient
from crmsync.common.kafka import RenewableProducer
from schemas import topics
from services.processor import metrics
from services.processor.pipeline import OUTBOX_CHANNEL

log = logging.getLogger(__name__)

# Any fixed key works; every crmsync relay must use the same one (the fault suite looks
# for its holder in pg_locks).
RELAY_LOCK = 0x6F7574626F78  # "outbox"
# Fallback poll when no notification arrives (lost on a reconnect, say).
POLL_SECONDS = 0.5
BATCH = 500


def record_key(row: asyncpg.Record) -> bytes:
    return f"{row['tenant_id']}:{row['entity_type']}:{row['entity_id']}".encode()


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: RenewableProducer,
        *,
        topic: str = topics.RECORDS_CHANGED.name,
        produce_timeout_seconds: float = 10.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.topic = topic
        self.produce_timeout_seconds = produce_timeout_seconds
        self._wake = asyncio.Event()
        # Set by a round that read the outbox lag itself (the leader's): the run loop then
        # does not ask for it again.
        self._lag_read = False

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; return how many (0: none, or not leader)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RELAY_LOCK):
                return 0
            rows = await conn.fetch(
                """
                SELECT id, tenant_id, entity_type, entity_id, payload::text AS payload
                  FROM outbox ORDER BY id LIMIT $1
                """,
                BATCH,
            )
            if not rows:
                metrics.OUTBOX_LAG_SECONDS.set(0)
                self._lag_read = True
                return 0
            await asyncio.wait_for(self._send(rows), self.produce_timeout_seconds)
            # The lag rides on the delete: the age of the first row after this batch (the
            # statement does not see its own deletes), as _update_lag would read it after
            # the commit, without that round trip of its own. A row of a lower id committed
            # after the batch was read counts from the next round.
            lag = await conn.fetchval(
                """
                WITH gone AS (DELETE FROM outbox WHERE id = ANY($1::bigint[]))
                SELECT coalesce(extract(epoch FROM clock_timestamp()
                                        - (SELECT created_at FROM outbox WHERE id > $2
                                            ORDER BY id LIMIT 1)), 0)
                """,
                [r["id"] for r in rows],
                rows[-1]["id"],
            )
        metrics.OUTBOX_LAG_SECONDS.set(float(lag))
        self._lag_read = True
        metrics.OUTBOX_PUBLISHED.inc(len(rows))
        return len(rows)

    async def _send(self, rows: list[asyncpg.Record]) -> None:
        # The json column keeps the text the apply step wrote: it is what we send.
        await self.producer.send_all(
            self.topic, [(record_key(r), r["payload"].encode()) for r in rows]
        )

    async def _update_lag(self) -> None:
        # The first row by id, through the primary key: min(created_at) read the whole
        # table, rows deleted since the last vacuum included, after every round (6 % of the
        # bench database's active time while the processor drained 100,000 changes). Ids
        # follow insertion, so it is the oldest row give or take one transaction's length.
        lag = await self.pool.fetchval(
            """
            SELECT coalesce(extract(epoch FROM now() - (SELECT created_at FROM outbox
                                                         ORDER BY id LIMIT 1)), 0)
            """
        )
        metrics.OUTBOX_LAG_SECONDS.set(float(lag))

    def _notified(self, *_args: Any) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Publish for ever; waits on NOTIFY or the poll interval when there is nothing.

        An outage is waited out here; any other error ends the call, and the processor's
        supervisor (``crmsync.common.supervise``) starts it again and reports it. A
        listening connection that died (PostgreSQL restarted) ends it too, so the
        restart listens again instead of falling back to polling for ever.
        """
        listener = await self.pool.acquire()
        try:
            await listener.add_listener(OUTBOX_CHANNEL, self._notified)
            backoff = Backoff()
            while True:
                if listener.is_closed():
                    raise asyncpg.exceptions.ConnectionDoesNotExistError(
                        "the outbox relay's listening connection closed"
                    )
                # Cleared before publishing: a NOTIFY that lands meanwhile wakes the next round.
                self._wake.clear()
                try:
                    self._lag_read = False
                    while await self.publish_pending() == BATCH:
                        pass  # a full batch: more may be waiting
                    if not self._lag_read:  # not the leader: nothing read it this round
                        await self._update_lag()
                    backoff.reset()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    delay = backoff.next_delay()
                    log.warning(
                        "outbox relay: publish failed, retrying in %.1fs: %s", delay, describe(exc)
                    )
                    await asyncio.sleep(delay)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
        finally:
            unlistened = False
            try:
                # UNLISTEN: the pool does not reset a connection it takes back (keep_session).
                with contextlib.suppress(Exception):
                    await listener.remove_listener(OUTBOX_CHANNEL, self._notified)
                    unlistened = True
            finally:
                if not unlistened:
                    # It may still be listening: closed, the pool opens another in its place.
                    listener.terminate()
                # A dead connection goes back too: the pool replaces it.
                await self.pool.release(listener)
