"""What a change names that must be its tenant's, and how a batch hands such a change over
to the one-by-one path (tests/integration/test_tenant_references.py has the rest)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from services.processor.apply import ForeignReferenceError, Named, named_ids
from services.processor.batch import ChangesRejectedError
from services.processor.decide import InboundChange
from services.processor.failures import Action, action_for


def _change(entity_type: str = "invoice") -> InboundChange:
    return InboundChange(
        tenant_id=uuid.uuid4(),
        connection_id=uuid.uuid4(),
        dedup_key="e1",
        entity_type=entity_type,  # type: ignore[arg-type]
        op="upsert",
        external_id="x-1",
        source_ts=datetime(2026, 11, 21, tzinfo=UTC),
        data={},
    )


def test_a_change_names_its_connection_and_every_reference_it_carries() -> None:
    change = _change()
    customer, job = uuid.uuid4(), uuid.uuid4()
    values = {"customer_id": str(customer), "job_id": str(job), "number": "A-1"}
    assert named_ids(change, values) == [
        Named("connection_id", "connection", change.connection_id),
        Named("customer_id", "customer", customer),
        Named("job_id", "job", job),
    ]
    assert named_ids(change, {"number": "A-1", "customer_id": None}) == [
        Named("connection_id", "connection", change.connection_id)
    ]


def test_another_tenants_id_and_nobodys_read_the_same() -> None:
    theirs, nobody = uuid.uuid4(), uuid.uuid4()
    one = Named("customer_id", "customer", theirs).not_owned()
    other = Named("customer_id", "customer", nobody).not_owned()
    assert one.reason == other.reason == ForeignReferenceError.REASON == "foreign_reference"
    assert one.detail.replace(str(theirs), "ID") == other.detail.replace(str(nobody), "ID")
    assert one.detail.startswith(f"customer_id {theirs}")


def test_a_rejected_batch_is_what_the_pipeline_replays_change_by_change() -> None:
    """The pipeline dead-letters such changes only on its one-by-one path: the batch's
    error must stay one it answers with that replay, not one that fails the batch."""
    error = ChangesRejectedError({3: Named("job_id", "job", uuid.uuid4()).not_owned()})
    assert action_for(error) is Action.REJECTED
    assert "foreign_reference" in str(error)
