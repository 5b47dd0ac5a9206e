"""From Kafka records to applied changes: parse, dead-letter the bad, apply the rest.

A batch is applied in one Postgres transaction, each change in a savepoint, so a change
Postgres rejects (a foreign key to a deleted connection, say) becomes a dead letter and
the rest of the batch still commits. When Postgres itself is unavailable the whole batch
is retried with backoff: waiting is right for an outage, skipping would lose events.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from pydantic import ValidationError

from crmsync.common.db import Conn
from schemas import topics
from schemas.changes import InternalChange
from services.processor import metrics
from services.processor.apply import (
    Applied,
    InboundChange,
    InvalidChangeError,
    apply_change,
    policy_from,
)
from services.processor.deadletters import Source, dead_letter

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "crmsync_outbox"
# Errors that say "Postgres is not there right now", not "this change is bad".
TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
# Errors that say "this change is bad": dead-letter it, keep the batch.
REJECTED = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class Parsed:
    source: Source
    change: InboundChange | None = None
    reason: str = ""
    detail: str = ""


def parse_internal(source: Source) -> Parsed:
    try:
        event = InternalChange.model_validate_json(source.value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        return Parsed(source, reason="unparseable", detail=f"{where}: {first['msg']}")
    c = event.change
    return Parsed(
        source,
        InboundChange(
            tenant_id=event.tenant_id,
            connection_id=event.connection_id,
            dedup_key=c.event_id,
            entity_type=c.entity_type,
            op=c.op,
            external_id=c.external_id,
            source_ts=c.occurred_at,
            data=dict(c.data),
            received_at=event.received_at,
        ),
    )


class Processor:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def handle(self, topic: str, sources: Sequence[Source]) -> list[Applied | None]:
        """Apply a batch from one pipeline topic (its unprefixed name, as in
        ``schemas.topics``); None marks a dead-lettered record."""
        if topic != topics.CHANGES_INTERNAL.name:
            raise ValueError(f"no parser for topic {topic}")
        parsed = [parse_internal(s) for s in sources]
        delay = 0.2
        while True:
            try:
                return await self._apply(topic, parsed)
            except TRANSIENT as exc:
                metrics.APPLY_RETRIES.inc()
                log.warning("postgres unavailable, retrying the batch in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _apply(self, topic: str, parsed: Sequence[Parsed]) -> list[Applied | None]:
        started = time.perf_counter()
        results: list[Applied | None] = []
        async with self.pool.acquire() as conn, conn.transaction():
            connection_ids = list({p.change.connection_id for p in parsed if p.change})
            rows = await conn.fetch(
                "SELECT id, settings FROM connections WHERE id = ANY($1::uuid[])", connection_ids
            )
            settings = {r["id"]: r["settings"] for r in rows}
            for item in parsed:
                results.append(await self._one(conn, item, settings))
            await self._log(conn, parsed, results, settings)
            if any(r is not None and r.change_id is not None for r in results):
                await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(parsed))
        now = datetime.now(UTC)
        for item, result in zip(parsed, results, strict=True):
            outcome = result.outcome.value if result is not None else "dead_lettered"
            metrics.EVENTS.labels(topic, outcome).inc()
            if result is not None and item.change and item.change.received_at:
                seconds = (now - item.change.received_at).total_seconds()
                metrics.RECEIVED_TO_COMMITTED_SECONDS.observe(max(seconds, 0.0))
        return results

    @staticmethod
    async def _log(
        conn: Conn,
        parsed: Sequence[Parsed],
        results: Sequence[Applied | None],
        settings: dict[uuid.UUID, dict[str, object]],
    ) -> None:
        """One sync_log row per change of a known connection, in one statement per batch."""
        now = datetime.now(UTC)
        rows = [
            (
                p.change.tenant_id,
                p.change.connection_id,
                p.change.entity_type,
                r.entity_id if r else None,
                p.change.external_id,
                r.outcome.value if r else "dead_lettered",
                int((now - p.change.received_at).total_seconds() * 1000)
                if p.change.received_at
                else None,
            )
            for p, r in zip(parsed, results, strict=True)
            if p.change is not None and p.change.connection_id in settings
        ]
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        await conn.execute(
            """
            INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                                  external_id, outcome, latency_ms)
            SELECT t, c, 'in', e, i, x, o, l
              FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[],
                          $6::text[], $7::int[]) AS u(t, c, e, i, x, o, l)
            """,
            *[list(col) for col in columns],
        )

    async def _one(
        self, conn: Conn, item: Parsed, settings: dict[uuid.UUID, dict[str, object]]
    ) -> Applied | None:
        change = item.change
        if change is None:
            await dead_letter(
                conn, item.source, stage="processor", reason=item.reason, detail=item.detail
            )
            return None
        if change.connection_id not in settings:
            reason, detail = "unknown_connection", f"connection {change.connection_id} not found"
        else:
            policy = policy_from(settings[change.connection_id], change.entity_type)
            try:
                async with conn.transaction():  # a savepoint: a rejected change undoes alone
                    return await apply_change(conn, change, policy)
            except InvalidChangeError as exc:
                reason, detail = exc.reason, exc.detail
            except REJECTED as exc:
                reason, detail = "rejected_by_database", f"{type(exc).__name__}: {exc}"
        await dead_letter(
            conn,
            item.source,
            stage="processor",
            reason=reason,
            detail=detail,
            tenant_id=change.tenant_id if change.connection_id in settings else None,
            connection_id=change.connection_id if change.connection_id in settings else None,
        )
        return None
