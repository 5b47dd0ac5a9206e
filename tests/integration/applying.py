"""The processor's apply step and the outbox relay's queueing, run in the test's process:
for integration tests that drive a change through to its pushes one step at a time."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schemas.records import CanonicalRecord
from services.outbound.queue import Router, enqueue, push_rows
from services.processor.apply import Applied
from services.processor.deadletters import Source
from services.processor.decide import InboundChange
from services.processor.pipeline import Parsed, Processor


def parsed(change: InboundChange) -> Parsed:
    """``change`` as the processor's batch takes it (read from no real record)."""
    return Parsed(Source("test", 0, 0, None, b"{}"), change)


async def apply_and_queue_pushes(pool: asyncpg.Pool, change: InboundChange) -> Applied:
    """Apply ``change`` as the processor does, then queue the pushes its outbox row makes
    (what the relay does with it)."""
    [applied] = await Processor(pool)._apply_batch([parsed(change)])
    assert applied is not None
    assert applied.change_id is not None
    payload = await pool.fetchval(
        "SELECT payload FROM outbox WHERE change_id = $1", applied.change_id
    )
    record = CanonicalRecord.model_validate_json(json.dumps(payload))
    await enqueue(pool, push_rows(record, await Router(pool).targets(record)))
    return applied


async def publish_customer(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    origin: uuid.UUID,
    n: int,
    data: dict[str, Any],
    *,
    at: datetime,
) -> Applied:
    """The origin's (an internal publisher's) ``n``-th change of customer ``cust-1``, made
    ``at``: applied, and its pushes queued."""
    change = InboundChange(
        tenant_id=tenant_id,
        connection_id=origin,
        dedup_key=f"erp-{n}",
        entity_type="customer",
        op="upsert",
        external_id="cust-1",
        source_ts=at,
        data=data,
        received_at=datetime.now(UTC),
    )
    return await apply_and_queue_pushes(pool, change)
