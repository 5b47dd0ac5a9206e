"""Dead letters: bad input is parked with its reason and original bytes, never retried
blindly and never allowed to stop a partition. The admin API lists and redrives them."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from crmsync.common.db import Conn
from services.processor import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a record came from, exactly, so a redrive can put it back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def dead_letter(
    conn: Conn,
    source: Source,
    *,
    stage: str,
    reason: str,
    detail: str,
    tenant_id: uuid.UUID | None = None,
    connection_id: uuid.UUID | None = None,
    provider: str | None = None,
    event_id: str | None = None,
) -> uuid.UUID:
    # The tenant and connection the record names, as far as they still exist: a tenant's
    # operators find its dead letters (the admin API lists by tenant), also those of a
    # connection deleted while its events were in flight. The connection only when it is
    # the tenant's own.
    # Parking a record twice (a batch retried after an outage, or handed out again after
    # a crash) keeps the first dead letter: one record, one dead letter (migration 0008).
    dead_id: uuid.UUID | None = await conn.fetchval(
        """
        INSERT INTO dead_letters (stage, reason, detail, tenant_id, connection_id, topic,
                                  kafka_partition, kafka_offset, record_key, payload)
        VALUES ($1, $2, $3,
                (SELECT id FROM tenants WHERE id = $4),
                (SELECT id FROM connections WHERE id = $5 AND tenant_id = $4),
                $6, $7, $8, $9, $10)
        ON CONFLICT (topic, kafka_partition, kafka_offset)
            WHERE topic IS NOT NULL AND kafka_offset IS NOT NULL DO NOTHING
        RETURNING id
        """,
        stage,
        reason,
        detail[:2000],
        tenant_id,
        connection_id,
        source.topic,
        source.partition,
        source.offset,
        source.key,
        source.value,
    )
    if dead_id is None:
        existing: uuid.UUID = await conn.fetchval(
            "SELECT id FROM dead_letters"
            " WHERE topic = $1 AND kafka_partition = $2 AND kafka_offset = $3",
            source.topic,
            source.partition,
            source.offset,
        )
        return existing
    metrics.DEAD_LETTERS.labels(stage, reason).inc()
    # Enough to find it in the admin API; never the payload itself.
    log.warning(
        "dead letter: %s",
        reason,
        extra={
            "dead_letter_id": str(dead_id),
            "stage": stage,
            "detail": detail[:300],
            "topic": source.topic,
            "partition": source.partition,
            "offset": source.offset,
            "tenant": str(tenant_id) if tenant_id else None,
            "connection": str(connection_id) if connection_id else None,
            "provider": provider,
            "event_id": event_id,
        },
    )
    return dead_id
