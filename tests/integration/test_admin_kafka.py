"""Admin operations that write to Kafka, against the real broker: redriving dead letters
back onto their topic, and replaying a connection's webhooks."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from crmsync.localstack.ports import free_port
from schemas.envelope import WebhookEnvelope
from tests.conftest import started
from tests.ingest_harness import Tap, tapping
from tests.integration.test_admin_api import Admin, new_connection, running_admin


@pytest.fixture
async def admin(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[Admin]:
    async with running_admin(
        database_url, kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix
    ) as harness:
        yield harness


@pytest.fixture
async def raw_tap(kafka_bootstrap: str, topic_prefix: str) -> AsyncIterator[Tap]:
    """This test's own webhooks.raw (behind its topic prefix), not the pipeline's."""
    async with tapping(kafka_bootstrap, topic_prefix + "webhooks.raw") as tap:
        yield tap


_offsets = itertools.count(42)


async def _processor_dead_letter(
    admin: Admin, topic: str, key: bytes, value: bytes, reason: str = "schema_violation"
) -> uuid.UUID:
    dead_id: uuid.UUID = await admin.pool.fetchval(
        """
        INSERT INTO dead_letters (stage, reason, tenant_id, topic, kafka_partition,
                                  kafka_offset, record_key, payload)
        VALUES ('processor', $1, $2, $3, 0, $6, $4, $5) RETURNING id
        """,
        reason,
        admin.tenant,
        topic,
        key,
        value,
        # One dead letter per Kafka record (migration 0008): each its own offset.
        next(_offsets),
    )
    return dead_id


async def test_redrive_puts_the_original_record_back_on_its_topic(
    admin: Admin, raw_tap: Tap, topic_prefix: str
) -> None:
    topic = topic_prefix + "webhooks.raw"
    dead = await _processor_dead_letter(admin, topic, b"conn-key", b'{"original": true}')
    done = await admin.ok("POST", f"/v1/dead-letters/{dead}/redrive")
    assert done["redriven_at"] is not None
    [record] = await raw_tap.read(b"conn-key", 1)
    assert record.value == b'{"original": true}'
    status, _ = await admin.call("POST", f"/v1/dead-letters/{dead}/redrive")
    assert status == 409


async def test_redrive_many_by_filter_reports_what_could_not_go(
    admin: Admin, raw_tap: Tap, topic_prefix: str
) -> None:
    topic = topic_prefix + "webhooks.raw"
    first = await _processor_dead_letter(admin, topic, b"k-many", b"1")
    second = await _processor_dead_letter(admin, topic, b"k-many", b"2")
    other_reason = await _processor_dead_letter(admin, topic, b"k-many", b"3", "unknown_conn")
    # An outbound dead letter whose record no longer exists cannot be re-queued.
    stripe = await new_connection(admin)
    orphan = await admin.pool.fetchval(
        """
        INSERT INTO dead_letters (stage, reason, tenant_id, connection_id, payload)
        VALUES ('outbound', 'schema_violation', $1, $2, $3) RETURNING id
        """,
        admin.tenant,
        uuid.UUID(stripe["id"]),
        b'{"connection_id": "%s", "entity_type": "customer", "entity_id": "%s"}'
        % (stripe["id"].encode(), str(uuid.uuid4()).encode()),
    )
    result = await admin.ok("POST", "/v1/dead-letters/redrive", json={"reason": "schema_violation"})
    assert sorted(result["redriven"]) == sorted([str(first), str(second)])
    assert result["failed"] == [{"id": str(orphan), "reason": "record_deleted"}]
    got = await raw_tap.read(b"k-many", 2)
    assert sorted(r.value for r in got) == [b"1", b"2"]
    still_open = await admin.ok("GET", "/v1/dead-letters")
    assert {d["id"] for d in still_open["items"]} == {str(other_reason), str(orphan)}
    by_id = await admin.ok("POST", "/v1/dead-letters/redrive", json={"ids": [str(other_reason)]})
    assert by_id["redriven"] == [str(other_reason)]
    status, _ = await admin.call(
        "POST", "/v1/dead-letters/redrive", json={"ids": [str(uuid.uuid4())]}
    )
    assert status == 404


async def test_redrive_with_kafka_down_answers_503_and_keeps_the_dead_letter_open(
    database_url: str,
) -> None:
    async with running_admin(database_url, kafka_bootstrap=f"127.0.0.1:{free_port()}") as admin:
        dead = await _processor_dead_letter(admin, "webhooks.raw", b"k", b"v")
        status, body = await admin.call("POST", f"/v1/dead-letters/{dead}/redrive")
        assert status == 503, body
        shown = await admin.ok("GET", f"/v1/dead-letters/{dead}")
        assert shown["redriven_at"] is None


def _envelope(tenant: uuid.UUID, connection: str, n: int) -> bytes:
    return (
        WebhookEnvelope(
            tenant_id=tenant,
            connection_id=uuid.UUID(connection),
            provider="stripe",
            provider_event_id=f"evt_{n}",
            received_at=datetime.now(UTC),
            body=b'{"id": "evt_%d"}' % n,
        )
        .model_dump_json()
        .encode()
    )


async def test_replay_reproduces_only_the_connections_envelopes_since_a_time(
    admin: Admin, kafka_bootstrap: str, topic_prefix: str
) -> None:
    ours = (await new_connection(admin, "stripe", name="ours"))["id"]
    theirs = (await new_connection(admin, "stripe", name="theirs"))["id"]
    topic = topic_prefix + "webhooks.raw"
    now = datetime.now(UTC)
    old = int((now - timedelta(hours=2)).timestamp() * 1000)
    recent = int((now - timedelta(minutes=5)).timestamp() * 1000)
    sends = [
        (ours, 1, old),
        (ours, 2, recent),
        (theirs, 3, recent),
        (ours, 4, recent),
    ]
    async with started(AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")) as producer:
        for connection, n, stamp in sends:
            await producer.send_and_wait(
                topic,
                _envelope(admin.tenant, connection, n),
                key=connection.encode(),
                timestamp_ms=stamp,
                headers=[("source", b"test")],
            )

    # Read what the replay writes, not the originals.
    async with tapping(kafka_bootstrap, topic) as tap:
        since = (now - timedelta(hours=1)).isoformat()
        result = await admin.ok("POST", "/v1/replay", json={"connection": ours, "since": since})
        replayed = await tap.read(ours.encode(), 3, within=3.0)
    assert (result["scanned"], result["matched"], result["produced"]) == (3, 2, 2)
    assert result["truncated"] is False
    assert sorted(
        WebhookEnvelope.model_validate_json(r.value).provider_event_id for r in replayed
    ) == [
        "evt_2",
        "evt_4",
    ]
    assert all(dict(r.headers)["source"] == b"test" for r in replayed)

    everything = await admin.ok(
        "POST", "/v1/replay", json={"connection": ours, "from_offset": 0, "max_records": 1}
    )
    assert everything["produced"] == 1
    assert everything["truncated"] is True

    for bad in (
        {"connection": ours},
        {"connection": ours, "since": since, "from_offset": 0},
        {"connection": ours, "from_offset": 0, "partition": 99},
    ):
        status, body = await admin.call("POST", "/v1/replay", json=bad)
        assert status == 422, (bad, body)
    status, _ = await admin.call(
        "POST", "/v1/replay", json={"connection": str(uuid.uuid4()), "from_offset": 0}
    )
    assert status == 404
