"""Ingest's size limits agree with Kafka's: what ingest accepts, its topics take."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer

from crmsync.common.kafka import RenewableProducer
from crmsync.common.settings import ConfigError, parse_settings
from crmsync.settings.ingest import (
    LARGEST_BODY_BYTES,
    MAX_RECORD_BYTES,
    IngestSettings,
    envelope_bytes_at_most,
)
from schemas import topics
from schemas.envelope import WebhookEnvelope
from services.ingest.handlers import Ingest, RecordTooLargeError


def test_the_largest_body_allowed_fits_a_record_and_one_more_byte_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert topics.WEBHOOKS_RAW.max_message_bytes == MAX_RECORD_BYTES
    assert envelope_bytes_at_most(LARGEST_BODY_BYTES) <= MAX_RECORD_BYTES
    monkeypatch.setenv("CRMSYNC_INGEST_MAX_BODY_BYTES", str(LARGEST_BODY_BYTES))
    assert parse_settings(IngestSettings).ingest_max_body_bytes == LARGEST_BODY_BYTES
    monkeypatch.setenv("CRMSYNC_INGEST_MAX_BODY_BYTES", str(LARGEST_BODY_BYTES + 1))
    with pytest.raises(ConfigError, match="CRMSYNC_INGEST_MAX_BODY_BYTES"):
        parse_settings(IngestSettings)


def test_an_envelope_never_outgrows_the_bound() -> None:
    """The real serialised envelope of the largest body, with long fields, stays inside."""
    body = b"\xff" * LARGEST_BODY_BYTES
    envelope = WebhookEnvelope(
        tenant_id=uuid.uuid4(),
        connection_id=uuid.uuid4(),
        provider="p" * 64,
        provider_event_id="e" * 512,
        received_at=datetime.now(UTC),
        content_type="c" * 256,
        headers={f"x-header-{i}": "v" * 4000 for i in range(8)},
        body=body,
    )
    encoded = envelope.model_dump_json().encode()
    assert base64.urlsafe_b64encode(body) in encoded
    assert len(encoded) <= envelope_bytes_at_most(LARGEST_BODY_BYTES)


class RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.sent.append((topic, key, value))
        raise AssertionError("nothing may be sent")


async def test_a_batch_with_one_record_too_large_sends_nothing() -> None:
    producer = RecordingProducer()
    ingest = Ingest(
        settings=parse_settings(IngestSettings),
        cache_of=lambda: pytest.fail("no cache needed"),
        producer_of=lambda: RenewableProducer(lambda: cast(AIOKafkaProducer, producer)),
        quotas_of=lambda: pytest.fail("no quotas needed"),
    )
    records = [(b"k1", b"{}"), (b"k2", b"x" * MAX_RECORD_BYTES)]
    with pytest.raises(RecordTooLargeError, match=r"changes\.internal takes 2097152"):
        await ingest._produce("changes.internal", records)
    assert producer.sent == []
