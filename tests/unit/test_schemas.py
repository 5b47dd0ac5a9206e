from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas import export, topics
from schemas.envelope import WebhookEnvelope


def test_exported_json_schema_is_up_to_date() -> None:
    for name, content in export.render().items():
        path = export.JSON_DIR / name
        assert path.exists(), f"{name} missing: run `crmsync schemas export`"
        assert path.read_text() == content, f"{name} is stale: run `crmsync schemas export`"


def _envelope(**overrides: object) -> WebhookEnvelope:
    fields: dict[str, object] = {
        "tenant_id": uuid.uuid4(),
        "connection_id": uuid.uuid4(),
        "provider": "stripe",
        "provider_event_id": "evt_1",
        "received_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "body": b'{"id": "evt_1"}\xff',
    }
    fields.update(overrides)
    return WebhookEnvelope.model_validate(fields)


def test_envelope_round_trips_raw_bytes_through_json() -> None:
    envelope = _envelope()
    again = WebhookEnvelope.model_validate_json(envelope.model_dump_json())
    assert again == envelope
    assert again.body.endswith(b"\xff")


def test_envelope_rejects_naive_timestamps() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        _envelope(received_at=datetime(2026, 1, 2, 3, 4, 5))


def test_envelope_rejects_unknown_fields_and_is_frozen() -> None:
    with pytest.raises(ValidationError):
        _envelope(surprise=1)
    with pytest.raises(ValidationError):
        _envelope().provider = "xero"  # type: ignore[misc]


def test_topic_names_are_unique() -> None:
    names = [t.name for t in topics.ALL]
    assert len(names) == len(set(names))
