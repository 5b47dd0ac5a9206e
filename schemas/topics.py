"""Kafka topic names and their keys: the one place they are spelled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    purpose: str
    # Partitions bound how far the processor and outbound scale out (one consumer each).
    partitions: int = 12
    # The largest record the topic takes (its max.message.bytes); None: the broker's default
    # (1 MiB). Existing topics with a smaller limit are raised by `crmsync topics ensure`.
    max_message_bytes: int | None = None


# A webhook's envelope carries its body in base64 (4/3 of the bytes) plus the fields and
# kept headers: ingest's default 1 MiB body limit needs more than Kafka's default 1 MiB.
# IngestSettings refuses a body limit whose envelopes would not fit.
LARGE_RECORD_BYTES: Final = 2 * 1024 * 1024


WEBHOOKS_RAW: Final = Topic(
    "webhooks.raw",
    key="connection id (or entity when cheaply known)",
    purpose="verified provider webhooks exactly as received",
    max_message_bytes=LARGE_RECORD_BYTES,
)
CHANGES_INTERNAL: Final = Topic(
    "changes.internal",
    key="tenant + entity",
    purpose="canonical change events published by internal services",
    max_message_bytes=LARGE_RECORD_BYTES,
)
CHANGES_NORMALIZED: Final = Topic(
    "changes.normalized",
    key="connection + entity type + external id",
    purpose="provider changes in canonical terms (webhooks after mapping and hydration, "
    "backfills, reconciliation), re-keyed by entity so each entity's changes stay in order",
)
RECORDS_CHANGED: Final = Topic(
    "records.changed",
    key="tenant + entity type + entity id",
    purpose="canonical state after commit, relayed from the outbox",
)

ALL: Final = (WEBHOOKS_RAW, CHANGES_INTERNAL, CHANGES_NORMALIZED, RECORDS_CHANGED)


def normalized_key(connection_id: object, entity_type: str, external_id: str) -> bytes:
    """The key of a ``changes.normalized`` record: one entity's changes stay in order."""
    return f"{connection_id}:{entity_type}:{external_id}".encode()


# A Kafka header on records an operator's redrive or replay put back on a pipeline topic
# (value: b"redrive" or b"replay"). The ledger counts what ingest accepted; a re-produced
# copy is the same acknowledgement again, not a new one.
REPRODUCED_HEADER: Final = "crmsync-reproduced"
