"""The set-based apply step's own encoders agree with the reference ones."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from schemas.records import CanonicalRecord
from services.processor.apply import meta_to_json, outbox_payload
from services.processor.batch import _Ids, meta_json
from services.processor.decide import InboundChange
from services.processor.merge import FieldMeta

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def test_meta_json_is_the_document_meta_to_json_makes() -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    meta = {
        "name": FieldMeta(T0, a),
        "email": FieldMeta(T0, a),
        'odd "name"\u00e9': FieldMeta(T0 + timedelta(microseconds=5), b),
        "phone": FieldMeta(T0.astimezone(UTC), b),
    }
    assert json.loads(meta_json(meta)) == meta_to_json(meta)
    assert json.loads(meta_json({})) == {}


def test_ids_are_distinct_random_uuids_across_refills() -> None:
    new_id = _Ids()
    ids = [new_id() for _ in range(3 * _Ids.CHUNK + 7)]
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {4}
    assert {i.variant for i in ids} == {uuid.RFC_4122}


def test_outbox_payload_is_a_canonical_record_as_json_text() -> None:
    change = InboundChange(
        tenant_id=uuid.uuid4(),
        connection_id=uuid.uuid4(),
        dedup_key="ev-1",
        entity_type="invoice",
        op="upsert",
        external_id="INV-1",
        source_ts=T0,
        data={},
    )
    entity_id = uuid.uuid4()
    state = {"number": "INV-1", "total": {"amount_minor": 1999, "currency": "AUD"}}
    change_id, text = outbox_payload(change, entity_id, 3, state, deleted=True)
    assert set(json.loads(text)) == set(CanonicalRecord.model_fields)
    record = CanonicalRecord.model_validate_json(text)
    assert record.change_id == change_id
    assert (record.tenant_id, record.entity_type, record.entity_id) == (
        change.tenant_id,
        "invoice",
        entity_id,
    )
    assert (record.version, record.deleted, record.state) == (3, True, state)
    assert record.origin_connection_id == change.connection_id
    assert record.committed_at.tzinfo is not None
    assert record.event_id not in (change_id, entity_id)
