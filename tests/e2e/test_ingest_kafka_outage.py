"""Kafka stops under ingest: 503 (the provider retries), never a 2xx for a lost event;
Kafka back: accepted again. Uses a Kafka of its own so the suite's broker stays up."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crmsync.common.kafka import TopicConfig, ensure_topics, make_admin, make_consumer
from crmsync.localstack.kafka import KafkaNode
from crmsync.localstack.ports import free_port
from crmsync.localstack.settings import LocalStackSettings
from schemas import topics
from schemas.envelope import WebhookEnvelope
from tests.conftest import started
from tests.ingest_harness import PUBLIC_BASE, Ingest, running_ingest
from tests.signing import sign

SECRET = "whsec_" + "k" * 32


@pytest.fixture
async def own_kafka(tmp_path: Path) -> AsyncIterator[KafkaNode]:
    settings = LocalStackSettings(
        state_dir=tmp_path / "state",
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
    )
    node = KafkaNode(settings)
    await node.up(lambda _line: None)
    async with started(make_admin(settings.kafka_bootstrap_servers)) as admin:
        await ensure_topics(admin, [TopicConfig.of(t, t.name, partitions=1) for t in topics.ALL])
    yield node
    node.down(lambda _line: None)


@pytest.mark.stack
async def test_kafka_down_gives_503_and_no_acknowledged_event_is_lost(
    database_url: str, own_kafka: KafkaNode
) -> None:
    bootstrap = own_kafka.settings.kafka_bootstrap_servers
    accepted: list[str] = []
    async for ingest in running_ingest(database_url, bootstrap, ingest_produce_timeout_seconds=1.0):
        conn = await ingest.connect("stripe", SECRET)
        path = f"/webhooks/stripe/{conn.id}"

        async def deliver(n: int, ingest: Ingest = ingest, path: str = path) -> int:
            body = f'{{"id": "evt_{n}"}}'.encode()
            headers = sign("stripe", SECRET, body, now=time.time(), url=PUBLIC_BASE + path)
            resp = await ingest.client.post(path, data=body, headers=headers)
            if resp.status == 200:
                accepted.append(f"evt_{n}")
            return resp.status

        assert await deliver(1) == 200
        own_kafka.down(lambda _line: None)
        down = [await deliver(n) for n in range(2, 5)]
        assert down == [503, 503, 503]
        await own_kafka.up(lambda _line: None)
        # The producer reconnects by itself; give it a few tries, as a provider would.
        for n in range(5, 40):
            if await deliver(n) == 200:
                break
        else:
            pytest.fail("ingest never accepted again after Kafka came back")

    stored: set[str] = set()
    consumer = make_consumer(bootstrap, topics.WEBHOOKS_RAW.name, group_id="outage-check")
    async with started(consumer):
        while not set(accepted) <= stored:
            batch = await consumer.getmany(timeout_ms=5000)
            if not batch:
                break
            for records in batch.values():
                for r in records:
                    stored.add(WebhookEnvelope.model_validate_json(r.value).provider_event_id or "")
    assert set(accepted) <= stored, f"acknowledged but not in Kafka: {set(accepted) - stored}"
