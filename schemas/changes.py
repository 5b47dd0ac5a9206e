"""Change events internal services publish through ``POST /v1/changes``."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field, JsonValue

from schemas.base import AwareDatetime, Event, FrozenModel

EntityType = Literal["customer", "job", "invoice", "payment"]
ReferenceField = Literal["customer_id", "job_id", "invoice_id"]

# One request, one Kafka acknowledgement for all: bounded so a request stays well under
# the body limit and the produce deadline.
MAX_CHANGES_PER_REQUEST = 500


class ChangeEvent(FrozenModel):
    """One change to one canonical record, as an internal service states it."""

    event_id: str = Field(
        min_length=1, max_length=200, description="The publisher's id: the dedup key."
    )
    entity_type: EntityType
    op: Literal["upsert", "delete"]
    external_id: str = Field(
        min_length=1, max_length=200, description="The record's id in the publisher."
    )
    occurred_at: AwareDatetime = Field(description="When the change happened at the source.")
    data: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Canonical fields of the record (upsert). A canonical id in customer_id, "
        "job_id or invoice_id must name a record of the publisher's own tenant: any other "
        "id (another tenant's, or nobody's) makes the change a foreign_reference dead letter.",
    )
    refs: dict[ReferenceField, str] = Field(
        default_factory=dict,
        description="References by the publisher's own ids: customer_id, job_id or invoice_id "
        "mapped to the external id of that record in the same connection. Resolved to "
        "canonical ids when applied; a change naming one not linked yet waits for it, "
        "then becomes a missing_reference dead letter.",
    )


class InternalChange(Event):
    """A change plus who published it: what ingest writes to ``changes.internal`` and the
    processor writes to ``changes.normalized`` for provider webhooks, backfills and
    reconciliation."""

    tenant_id: UUID
    connection_id: UUID
    received_at: AwareDatetime
    change: ChangeEvent
    # Set by the processor's normalisation only, never by an internal service (ChangeEvent,
    # the public shape, has no version): optional, so messages written before it still parse;
    # left out when None, so a message without one is byte for byte as before and a
    # processor that does not know the field yet (a rolling deploy: extra fields are
    # refused) still reads every message but those that carry a version.
    record_version: str | None = Field(
        None,
        max_length=200,
        exclude_if=lambda v: v is None,
        description="The provider's version of the record in this state (QuickBooks' "
        "SyncToken), where it has one. A provider that declares its versions ordered "
        "(ApiSpec.versions_ordered) has a state below the newest heard taken as stale.",
    )
