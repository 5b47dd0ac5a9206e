"""Canonical record values and their state hash, shared by the processor (what a source
told us) and the outbound service (what we pushed): both must hash the same values the
same way, or a provider echoing our own write back would look like a new change."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import ValidationError

from schemas.errors import DeadLetter
from schemas.records import ENTITY_MODELS

# The table holding each entity type's canonical records.
TABLES: dict[str, str] = {
    "customer": "customers",
    "job": "jobs",
    "invoice": "invoices",
    "payment": "payments",
}


class InvalidRecordError(DeadLetter):
    """Data that is not a valid (partial) canonical record: ``reason`` is a bounded label."""


def canonical_values(entity_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate against the canonical model; keep only the fields that were sent."""
    model = ENTITY_MODELS.get(entity_type)
    if model is None:
        raise InvalidRecordError("unknown_entity_type", entity_type)
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRecordError("schema_violation", f"{where}: {first['msg']}") from None
    values: dict[str, Any] = parsed.model_dump(mode="json", exclude_unset=True)
    return values


def state_json(values: dict[str, Any]) -> str:
    """A record's state as the JSON text its hash is taken of: sorted keys, no spaces.

    Also a valid JSON document of those values, so the processor writes this one text as
    a new record's data, its first link's snapshot and its outbox event's state instead of
    encoding the same values three more times (bench/README.md, "Eighth round")."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


def hash_of_state_json(text: str) -> str:
    """:func:`state_hash` of the values whose :func:`state_json` is ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()


def state_hash(values: dict[str, Any]) -> str:
    """Hash of a record's state as one system sees it: equal hash, nothing new."""
    return hash_of_state_json(state_json(values))
