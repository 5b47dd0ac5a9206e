"""Per-connection field-mapping overrides on built-in connectors: custom fields.

A connection's settings may carry ``field_overrides``: per entity type, a list of the
generic connector's field mappings (``canonical``, ``path``, ``direction``, transforms)::

    {"customer": [{"canonical": "notes", "path": "metadata.crm_notes"},
                  {"canonical": "company", "path": "custom.trading_name",
                   "direction": "inbound"}]}

Inbound, each override reads its path from the provider's object and replaces what the
built-in mapping gave that canonical field (a path the object lacks leaves it as it was).
Outbound, each writes the canonical value to its path in the body the built-in mapping
built (the built-in field is still written too). Full webhooks of an entity type with
inbound overrides are hydrated like thin ones, since a webhook's copy of an object is
mapped before the overrides could see it; that costs one API read per event of that type.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, RootModel, ValidationError, model_validator

from connectors.generic.config import FieldMapping
from connectors.generic.mapping import read_field, write_field
from connectors.spec import EntityType, MappingError, RemoteRecord, WebhookParse
from schemas.records import Customer, Invoice, Job, Payment

SETTING = "field_overrides"
_MODELS: dict[str, type[BaseModel]] = {
    "customer": Customer,
    "job": Job,
    "invoice": Invoice,
    "payment": Payment,
}


class FieldOverrides(RootModel[dict[EntityType, tuple[FieldMapping, ...]]]):
    """Validated ``field_overrides``; errors name the entity type, index and field."""

    @model_validator(mode="after")
    def _known_canonical_fields(self) -> FieldOverrides:
        for entity_type, mappings in self.root.items():
            fields = _MODELS[entity_type].model_fields
            for index, mapping in enumerate(mappings):
                if mapping.canonical is None or mapping.path is None:
                    raise ValueError(f"{entity_type}[{index}]: needs canonical and path")
                head = mapping.canonical.partition(".")[0]
                if head not in fields:
                    raise ValueError(
                        f"{entity_type}[{index}].canonical: {mapping.canonical!r} is not a "
                        f"{entity_type} field ({', '.join(fields)})"
                    )
        return self


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> FieldOverrides:
    return FieldOverrides.model_validate_json(text)


def overrides(settings: Mapping[str, Any], entity_type: str) -> tuple[FieldMapping, ...]:
    """The connection's overrides for ``entity_type``; MappingError when they are invalid
    (the change then dead-letters with the reason instead of syncing wrong fields)."""
    raw = settings.get(SETTING)
    if not raw:
        return ()
    try:
        parsed = _parse(json.dumps(raw, sort_keys=True))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MappingError(
            "invalid_settings", f"settings.{SETTING}.{where}: {first['msg']}"
        ) from None
    return next((m for t, m in parsed.root.items() if t == entity_type), ())


def validate(raw: Any) -> None:
    """Raise ValueError naming the first problem of a ``field_overrides`` value."""
    try:
        FieldOverrides.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"{SETTING}.{where}: {first['msg']}") from None


def apply_inbound(
    entity_type: EntityType,
    obj: Mapping[str, Any],
    record: RemoteRecord,
    settings: Mapping[str, Any],
) -> RemoteRecord:
    mappings = [m for m in overrides(settings, entity_type) if m.reads]
    if not mappings:
        return record
    data = dict(record.data)
    for mapping in mappings:
        read_field(data, mapping, obj, entity_type, obj)
    return dataclasses.replace(record, data=data)


def apply_outbound(
    entity_type: EntityType,
    body: dict[str, Any],
    data: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    for mapping in overrides(settings, entity_type):
        if mapping.writes:
            write_field(body, mapping, data, data)
    return body


def _hydrate_overridden(parsed: WebhookParse, settings: Mapping[str, Any]) -> WebhookParse:
    items = tuple(
        dataclasses.replace(item, record=None)
        if item.record is not None
        and item.op == "upsert"
        and any(m.reads for m in overrides(settings, item.entity_type))
        else item
        for item in parsed.items
    )
    return dataclasses.replace(parsed, items=items)


M = TypeVar("M")


def with_field_overrides(cls: type[M]) -> type[M]:
    """Class decorator for a connector's Mapper: its to_canonical, from_canonical and
    parse_webhook honour the connection's ``field_overrides``."""
    to_canonical: Callable[..., RemoteRecord] = cls.to_canonical  # type: ignore[attr-defined]
    from_canonical: Callable[..., dict[str, Any]] = cls.from_canonical  # type: ignore[attr-defined]
    parse_webhook: Callable[..., WebhookParse] = cls.parse_webhook  # type: ignore[attr-defined]

    @functools.wraps(to_canonical)
    def to_canonical_overridden(
        self: M, entity_type: EntityType, obj: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> RemoteRecord:
        record = to_canonical(self, entity_type, obj, settings)
        return apply_inbound(entity_type, obj, record, settings)

    @functools.wraps(from_canonical)
    def from_canonical_overridden(
        self: M,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:
        body = from_canonical(self, entity_type, data, refs, settings)
        return apply_outbound(entity_type, body, data, settings)

    @functools.wraps(parse_webhook)
    def parse_webhook_overridden(
        self: M, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        return _hydrate_overridden(parse_webhook(self, body, headers, settings), settings)

    cls.to_canonical = to_canonical_overridden  # type: ignore[attr-defined]
    cls.from_canonical = from_canonical_overridden  # type: ignore[attr-defined]
    cls.parse_webhook = parse_webhook_overridden  # type: ignore[attr-defined]
    return cls
