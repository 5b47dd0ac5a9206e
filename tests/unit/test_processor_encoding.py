"""The set-based apply step's own encoders agree with the reference ones."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.common.canonical import hash_of_state_json, state_hash, state_json
from schemas.records import CanonicalRecord
from services.processor.apply import meta_to_json, outbox_payload
from services.processor.batch import _Ids, _Texts, meta_json
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


# With the state's text given (the set-based path has it), it is spliced into the envelope.
@pytest.mark.parametrize("given_text", [False, True], ids=["encoded", "state_text"])
def test_outbox_payload_is_a_canonical_record_as_json_text(given_text: bool) -> None:
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
    state = {"number": 'INV "1" é', "total": {"amount_minor": 1999, "currency": "AUD"}}
    change_id, text = outbox_payload(
        change,
        entity_id,
        3,
        state,
        deleted=True,
        state_text=state_json(state) if given_text else None,
    )
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


def test_a_batchs_record_link_and_event_carry_the_text_its_hash_was_taken_of() -> None:
    """The set-based path encodes a new record's values once: the text hashed for the link
    (decide's rule 5, compared with what outbound hashes) is the text written as the
    record's data, the link's snapshot and the event's state."""
    texts = _Texts()
    values = {"name": "Acme", "email": "a@acme.test", "address": {"city": "Sydney"}}
    text = texts.of(values)
    assert hash_of_state_json(text) == state_hash(values)
    assert json.loads(text) == values
    assert texts.of(values) is text  # the same dict: not encoded again
    equal = dict(values)
    assert texts.of(equal) == text  # an equal dict is encoded on its own: the same text
    texts.put(equal, "x")
    assert texts.of(equal) == "x"  # by identity, as put
    assert texts.of(values) is text
