"""The Kafka client factory against the real broker of the local stack."""

from __future__ import annotations

import pytest

from crmsync.common.kafka import (
    KafkaUnavailableError,
    TopicConfig,
    check_topics,
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
)
from tests.conftest import TopicFactory


async def test_acknowledged_records_are_consumed_back_in_order(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("roundtrip")
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for i in range(50):
            meta = await producer.send_and_wait(topic, f"v{i}".encode(), key=b"entity-1")
            assert meta.offset == i
    finally:
        await producer.stop()

    consumer = make_consumer(kafka_bootstrap, topic, group_id=f"{topic}.g")
    await consumer.start()
    try:
        got: list[bytes] = []
        while len(got) < 50:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(got)} of 50 records came back"
            for records in batch.values():
                got.extend(r.value for r in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert got == [f"v{i}".encode() for i in range(50)]


async def test_consumer_group_resumes_after_its_committed_offset(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("resume")
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(topic, str(i).encode())
    finally:
        await producer.stop()
    group = f"{topic}.g"

    first = make_consumer(kafka_bootstrap, topic, group_id=group)
    await first.start()
    try:
        record = await first.getone()
        await first.commit()  # commits past the first record only
    finally:
        await first.stop()
    assert record.value == b"0"

    second = make_consumer(kafka_bootstrap, topic, group_id=group)
    await second.start()
    try:
        assert (await second.getone()).value == b"1"
    finally:
        await second.stop()


async def test_ensure_topics_is_idempotent_and_check_topics_names_missing(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    existing = await new_topic("exists")
    admin = make_admin(kafka_bootstrap)
    await admin.start()
    try:
        assert await ensure_topics(admin, [TopicConfig(existing, 1)]) == []
    finally:
        await admin.close()

    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        await check_topics(producer.client, [existing])
        with pytest.raises(KafkaUnavailableError, match=r"missing topics nope\.never"):
            await check_topics(producer.client, [existing, "nope.never"])
    finally:
        await producer.stop()
