"""Outbox rows as migration 0007 shapes them (JSON text published as written, no foreign
keys) and the relay's lag gauge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import OutOfOrderSequenceNumber
from prometheus_client import REGISTRY

from crmsync.common.connections import CreatedConnection
from crmsync.common.db import create_pool, keep_session
from crmsync.common.kafka import RenewableProducer, make_consumer, make_producer
from crmsync.common.supervise import TaskHealth, supervise
from schemas.records import CanonicalRecord
from services.processor import outbox
from services.processor.deadletters import Source
from services.processor.metrics import OUTBOX_LAG_SECONDS
from services.processor.outbox import OutboxRelay
from services.processor.pipeline import Processor
from tests.conftest import TopicFactory, started
from tests.integration.test_apply import TOPIC, connect
from tests.integration.test_apply import change as apply_change

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def change(conn: CreatedConnection, external_id: str, data: dict[str, Any]) -> Source:
    return apply_change(conn, external_id, data, ts=T0, event_id=f"ev-{external_id}")


async def read(bootstrap: str, topic: str, want: int) -> list[bytes]:
    found: list[bytes] = []
    async with started(make_consumer(bootstrap, topic, group_id=f"{topic}.reader")) as consumer:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=500)
            found += [r.value for rs in batch.values() for r in rs if r.value is not None]
            if len(found) >= want:
                break
    return found


async def publish_once(pool: asyncpg.Pool, bootstrap: str, topic: str) -> int:
    """One relay round through a producer of its own: how many rows it published."""
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        return await OutboxRelay(
            pool, RenewableProducer(lambda: producer), topic=topic
        ).publish_pending()
    finally:
        await producer.stop()


@pytest.mark.parametrize("set_based", [True, False])
async def test_relay_publishes_the_payload_text_the_apply_step_wrote(
    pool: asyncpg.Pool, kafka_bootstrap: str, new_topic: TopicFactory, set_based: bool
) -> None:
    crm = await connect(pool, "acme", "crm")
    (applied,) = await Processor(pool, set_based=set_based).handle(
        TOPIC, [change(crm, "c1", {"name": "Zoë Café", "email": "zoe@cafe.test"})]
    )
    assert applied is not None
    assert await pool.fetchval("SELECT pg_typeof(payload)::text FROM outbox") == "json"
    stored = await pool.fetchval("SELECT payload::text FROM outbox")
    record = CanonicalRecord.model_validate_json(stored)
    assert record.change_id == applied.change_id
    assert record.entity_id == applied.entity_id
    assert record.version == 1
    assert record.origin_connection_id == crm.id
    assert record.state == {"name": "Zoë Café", "email": "zoe@cafe.test"}
    assert record.event_id not in (record.change_id, record.entity_id)

    topic = await new_topic("outbox")
    assert await publish_once(pool, kafka_bootstrap, topic) == 1
    assert await read(kafka_bootstrap, topic, 1) == [stored.encode()]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_deleting_the_origin_connection_leaves_pending_changes_to_the_relay(
    pool: asyncpg.Pool,
) -> None:
    crm = await connect(pool, "acme", "crm")
    await Processor(pool).handle(TOPIC, [change(crm, "c1", {"name": "Acme"})])
    # No foreign key: deleting the connection neither waits on nor rewrites the outbox row,
    # and the relay still publishes the committed change (invariant 3).
    await asyncio.wait_for(pool.execute("DELETE FROM connections WHERE id = $1", crm.id), 5)
    row = await pool.fetchrow("SELECT origin_connection_id, payload FROM outbox")
    assert row["origin_connection_id"] == crm.id
    assert row["payload"]["origin_connection_id"] == str(crm.id)


async def two_pending_one_aged(pool: asyncpg.Pool, *, first: bool) -> None:
    """Two committed changes' outbox rows, the first (or the last) of them 90 s old."""
    crm = await connect(pool, "acme", "crm")
    await Processor(pool).handle(
        TOPIC, [change(crm, "c1", {"name": "Acme"}), change(crm, "c2", {"name": "Beta"})]
    )
    await pool.execute(
        "UPDATE outbox SET created_at = now() - interval '90 seconds'"
        " WHERE id = (SELECT id FROM outbox ORDER BY CASE WHEN $1 THEN id ELSE -id END LIMIT 1)",
        first,
    )


async def test_outbox_lag_is_the_age_of_the_oldest_pending_row(pool: asyncpg.Pool) -> None:
    await two_pending_one_aged(pool, first=True)
    relay = OutboxRelay(pool, producer=None)  # type: ignore[arg-type] # lag reads no Kafka
    await relay._update_lag()
    assert 90 <= (REGISTRY.get_sample_value("crmsync_processor_outbox_lag_seconds") or 0) < 120
    await pool.execute("DELETE FROM outbox")
    await relay._update_lag()
    assert REGISTRY.get_sample_value("crmsync_processor_outbox_lag_seconds") == 0


async def test_a_publishing_round_reads_the_lag_with_its_delete(
    pool: asyncpg.Pool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leader's round sets the gauge from the row its batch left first (the statement
    that deletes the batch reads it), not from one more round trip after it."""
    await two_pending_one_aged(pool, first=False)
    monkeypatch.setattr(outbox, "BATCH", 1)  # the round publishes c1 and leaves c2
    OUTBOX_LAG_SECONDS.set(-1)
    topic = await new_topic("outbox")
    assert await publish_once(pool, kafka_bootstrap, topic) == 1
    assert 90 <= (REGISTRY.get_sample_value("crmsync_processor_outbox_lag_seconds") or 0) < 120
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_the_relay_is_restarted_after_an_error_it_did_not_expect(
    pool: asyncpg.Pool, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """The relay used to end for good on an error outside its list, and nothing was
    published until someone restarted the process. Supervised, as the processor runs it,
    it is back within a second and reports the failure meanwhile."""
    crm = await connect(pool, "acme", "crm")
    topic = await new_topic("outbox")
    async with started(make_producer(kafka_bootstrap)) as producer:
        relay = OutboxRelay(pool, RenewableProducer(lambda: producer), topic=topic)
        real = relay.publish_pending
        failures = 0

        async def publish_once_broken() -> int:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise KeyError("a bug")
            return await real()

        relay.publish_pending = publish_once_broken  # type: ignore[method-assign]
        health = TaskHealth("test-outbox-relay")
        task = asyncio.create_task(
            supervise(
                relay.run, health=health, log=logging.getLogger("test"), healthy_after_seconds=0.5
            )
        )
        try:
            await Processor(pool).handle(TOPIC, [change(crm, "c1", {"name": "Acme"})])
            assert len(await read(kafka_bootstrap, topic, 1)) == 1
            assert failures == 1
            # The relay deletes the row after Kafka acknowledged it: on a loaded machine the
            # message can be read before that DELETE commits.
            for _ in range(100):
                if await pool.fetchval("SELECT count(*) FROM outbox") == 0:
                    break
                await asyncio.sleep(0.1)
            assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_the_relay_renews_a_producer_the_broker_refuses_as_out_of_order(
    pool: asyncpg.Pool, kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """After a Kafka restart the broker may not know the producer's sequence any more: an
    idempotent producer then answers OutOfOrderSequenceNumber to every retry, for ever,
    and committed changes wait unpublished (212 of them in a fault run). Here the
    producer's sequence is pushed ahead of the broker's, which the broker refuses the same
    way; the relay's next round publishes through a new producer."""
    crm = await connect(pool, "acme", "crm")
    topic = await new_topic("outbox", partitions=1)
    producers = RenewableProducer(lambda: make_producer(kafka_bootstrap))
    await producers.start()
    relay = OutboxRelay(pool, producers, topic=topic)
    try:
        await Processor(pool).handle(TOPIC, [change(crm, "c-1", {"name": "First"})])
        assert await relay.publish_pending() == 1
        broken = producers.producer
        # The broker's record of this producer and partition no longer matches.
        broken._txn_manager._sequence_numbers[TopicPartition(topic, 0)] += 1000
        await Processor(pool).handle(TOPIC, [change(crm, "c-2", {"name": "Second"})])
        with pytest.raises(OutOfOrderSequenceNumber):
            await relay.publish_pending()
        assert producers.producer is not broken
        assert await relay.publish_pending() == 1
    finally:
        await producers.stop()
    assert len(await read(kafka_bootstrap, topic, 2)) == 2


async def test_the_relay_gives_its_connection_back_not_listening(database_url: str) -> None:
    """The processor's pool takes connections back as they are (keep_session: no
    ``UNLISTEN *``), so the relay unlistens its own before releasing it; otherwise the next
    borrower of that connection would be sent every commit's notification."""
    pool = await create_pool(database_url, min_size=2, max_size=2, reset=keep_session)
    relay = OutboxRelay(pool, producer=None)  # type: ignore[arg-type] # no rows: no Kafka
    listening = asyncio.Event()
    first_round = relay.publish_pending

    async def round_done() -> int:  # the first round runs after add_listener
        published = await first_round()
        listening.set()
        return published

    relay.publish_pending = round_done  # type: ignore[method-assign]
    task = asyncio.create_task(relay.run())
    try:
        await asyncio.wait_for(listening.wait(), 30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:
        async with pool.acquire() as one, pool.acquire() as two:
            for conn in (one, two):
                assert await conn.fetch("SELECT pg_listening_channels()") == []
    finally:
        await pool.close()
