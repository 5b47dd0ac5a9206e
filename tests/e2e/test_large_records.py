"""Records larger than Kafka's default 1 MiB, which ingest's topics now take, pass through
the processor's consumer: read, judged, and never a stuck partition."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from crmsync.common.kafka import make_producer
from crmsync.localstack.ports import free_port
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange
from tests.conftest import started
from tests.e2e.helpers import stop, wait_until_ready
from tests.e2e.test_processor_pipeline import change_bytes, start_worker, wait_for
from tests.integration.test_apply import connect


async def test_a_change_over_one_mebibyte_is_read_and_the_partition_moves_on(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic_prefix: str, tmp_path: Path
) -> None:
    conn = await connect(pool, "acme", "internal")
    big = (
        InternalChange(
            tenant_id=conn.tenant_id,
            connection_id=conn.id,
            received_at=datetime.now(UTC),
            change=ChangeEvent(
                event_id="evt-big",
                entity_type="customer",
                op="upsert",
                external_id="c-1",
                occurred_at=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
                data={"name": "Big Notes Pty Ltd", "notes": "n" * (1024 * 1024 + 100_000)},
            ),
        )
        .model_dump_json()
        .encode()
    )
    assert 1024 * 1024 < len(big) < topics.LARGE_RECORD_BYTES
    # The same key as the change after it: one partition, the big one first.
    key, small = change_bytes(conn, 2, external_id="c-1")
    source = topic_prefix + topics.CHANGES_INTERNAL.name
    producer = make_producer(kafka_bootstrap, max_request_size=topics.LARGE_RECORD_BYTES)
    async with started(producer):
        await (await producer.send(source, big, key=key))
        await (await producer.send(source, small, key=key))

    port = free_port()
    proc = await asyncio.to_thread(
        start_worker, database_url, kafka_bootstrap, topic_prefix, tmp_path, port
    )
    try:
        await asyncio.to_thread(wait_until_ready, f"http://127.0.0.1:{port}/readyz", proc)
        applied = "SELECT count(*) FROM customers WHERE data->>'name' = 'Customer 2'"
        assert await wait_for(pool, applied, 1) == 1
        dead = await pool.fetchrow(
            "SELECT reason, detail, length(payload) AS size FROM dead_letters"
        )
    finally:
        assert await asyncio.to_thread(stop, proc) == 0
    # Read whole, judged (its notes exceed what a customer holds) and parked with every
    # byte; the change after it was not held up.
    assert dead is not None
    assert (dead["reason"], dead["size"]) == ("schema_violation", len(big))
    assert "notes" in dead["detail"]
