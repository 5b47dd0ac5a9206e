"""The Kafka client factory against the real broker of the local stack."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from crmsync.common.kafka import (
    MAX_MESSAGE_BYTES,
    KafkaUnavailableError,
    TopicConfig,
    check_topics,
    ensure_topics,
    make_admin,
    make_consumer,
    make_producer,
    raise_message_limits,
    record_lifetimes,
)
from tests.conftest import TopicFactory, started


async def produced(
    kafka_bootstrap: str, topic: str, values: list[bytes], key: bytes | None = None
) -> list[int]:
    """Each of ``values`` sent to ``topic`` in order, each acknowledged before the next is
    sent: their offsets."""
    async with started(make_producer(kafka_bootstrap)) as producer:
        return [(await producer.send_and_wait(topic, value, key=key)).offset for value in values]


async def test_acknowledged_records_are_consumed_back_in_order(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("roundtrip")
    sent = [f"v{i}".encode() for i in range(50)]
    assert await produced(kafka_bootstrap, topic, sent, key=b"entity-1") == list(range(50))

    async with started(make_consumer(kafka_bootstrap, topic, group_id=f"{topic}.g")) as consumer:
        got: list[bytes] = []
        while len(got) < 50:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, f"only {len(got)} of 50 records came back"
            for records in batch.values():
                got.extend(r.value for r in records)
        await consumer.commit()
    assert got == sent


async def test_consumer_group_resumes_after_its_committed_offset(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    topic = await new_topic("resume")
    await produced(kafka_bootstrap, topic, [str(i).encode() for i in range(4)])
    group = f"{topic}.g"

    async with started(make_consumer(kafka_bootstrap, topic, group_id=group)) as first:
        record = await first.getone()
        await first.commit()  # commits past the first record only
    assert record.value == b"0"

    async with started(make_consumer(kafka_bootstrap, topic, group_id=group)) as second:
        assert (await second.getone()).value == b"1"


async def test_ensure_topics_is_idempotent_and_check_topics_names_missing(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    existing = await new_topic("exists")
    async with started(make_admin(kafka_bootstrap)) as admin:
        assert await ensure_topics(admin, [TopicConfig(existing, 1)]) == []

    async with started(make_producer(kafka_bootstrap)) as producer:
        await check_topics(producer.client, [existing])
        with pytest.raises(KafkaUnavailableError, match=r"missing topics nope\.never"):
            await check_topics(producer.client, [existing, "nope.never"])


async def test_message_limits_are_raised_on_existing_topics_keeping_their_settings(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """A topic made before its limit was declared gets it; what an operator set stays."""
    small, large = await new_topic("small"), await new_topic("large")
    async with started(make_admin(kafka_bootstrap)) as admin:

        async def configs(name: str) -> dict[str, str]:
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)]
            )
            ((_code, _msg, _type, _name, entries),) = response.resources
            return {e[0]: e[1] for e in entries}

        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, small, configs={"retention.ms": "3600000"}
                ),
                ConfigResource(
                    ConfigResourceType.TOPIC, large, configs={MAX_MESSAGE_BYTES: "8388608"}
                ),
            ]
        )
        # KRaft applies a config change to the broker's metadata after the controller
        # answers: read only once the broker shows it (raise_message_limits reads the
        # current set and writes it back whole, so it must see this one).
        await settled(configs, small, "retention.ms", "3600000")
        await settled(configs, large, MAX_MESSAGE_BYTES, "8388608")
        before = int((await configs(small))[MAX_MESSAGE_BYTES])
        wanted = [
            TopicConfig(small, 1, max_message_bytes=2 * 1024 * 1024),
            TopicConfig(large, 1, max_message_bytes=2 * 1024 * 1024),
        ]
        assert await raise_message_limits(admin, wanted) == [(small, before, 2 * 1024 * 1024)]

        await settled(configs, small, MAX_MESSAGE_BYTES, str(2 * 1024 * 1024))
        after = await configs(small)
        assert after[MAX_MESSAGE_BYTES] == str(2 * 1024 * 1024)
        assert after["retention.ms"] == "3600000"
        assert (await configs(large))[MAX_MESSAGE_BYTES] == "8388608"
        assert await raise_message_limits(admin, wanted) == []


async def test_new_topics_are_created_with_their_message_limit(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    name = (await new_topic("probe")) + ".limit"
    async with started(make_admin(kafka_bootstrap)) as admin:
        try:
            assert await ensure_topics(admin, [TopicConfig(name, 1, max_message_bytes=3_000_000)])
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name, configs={MAX_MESSAGE_BYTES: None})]
            )
            assert response.resources[0][4][0][1] == "3000000"
        finally:
            await admin.delete_topics([name])


async def test_topics_it_creates_are_described_once_it_returns(
    kafka_bootstrap: str, new_topic: TopicFactory
) -> None:
    """KRaft acknowledges a creation before the broker knows the topic: what creates the
    pipeline's topics and then reads their limits and lifetimes must see them."""
    base = await new_topic("visible")
    made: list[str] = []
    try:
        # A new admin client a round, as `crmsync topics ensure` and the processor's
        # start-up each make one: ten topics at once were then unknown nearly every time.
        for round_ in range(3):
            async with started(make_admin(kafka_bootstrap)) as admin:
                names = [f"{base}.{round_}.{i}" for i in range(10)]
                retention = (("retention.ms", "60000"), ("segment.ms", "1000"))
                made += await ensure_topics(
                    admin, [TopicConfig(n, 1, config=retention) for n in names]
                )
                assert await record_lifetimes(admin, names) == dict.fromkeys(names, 61.0)
                raised = await raise_message_limits(
                    admin, [TopicConfig(n, 1, max_message_bytes=3_000_000) for n in names]
                )
                assert sorted(name for name, _old, _new in raised) == sorted(names)
    finally:
        async with started(make_admin(kafka_bootstrap)) as admin:
            await admin.delete_topics(made)


async def settled(
    configs: Callable[[str], Awaitable[dict[str, str]]], topic: str, key: str, value: str
) -> None:
    """Wait (up to 10 s) until the broker reports ``key`` = ``value`` for ``topic``."""
    for _ in range(100):
        if (await configs(topic)).get(key) == value:
            return
        await asyncio.sleep(0.1)
