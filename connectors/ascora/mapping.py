"""Ascora objects <-> canonical records, and Ascora's webhooks as record changes.

Ascora publishes no API specification, so the object shapes here are the ones assumed in
connectors/ascora/README.md (field names follow the objects Ascora posts to webhook
subscribers, as captured in Pipedream's Ascora test events). Everything is a pure function
of its inputs; nothing here reads the clock or the network.

Conventions of the assumed API that shape the mapping:

- Blank text is ``""`` as often as ``null``; both read as "no value" (None).
- Amounts are decimal strings next to the record's ``currency`` (exact, see money.py);
  quantities are decimal strings too.
- Timestamps are ISO 8601 with an offset; a timestamp without one is refused, not guessed.
- References are flat id fields (``customerId``, ``jobId``, ``invoiceId``) and travel in
  ``RemoteRecord.refs``; canonical data never carries them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError

from connectors.ascora.money import parse_decimal, to_decimal_string, to_minor
from connectors.base import bounded_event_id, clean_text
from connectors.overrides import with_field_overrides
from connectors.spec import (
    ENTITY_TYPES,
    REFERENCE_FIELDS,
    EntityType,
    MappingError,
    Op,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
    json_body,
    require,
)
from schemas.records import ENTITY_MODELS

# Each entity's id field in Ascora's objects.
ID_FIELDS: dict[EntityType, str] = {
    "customer": "customerId",
    "job": "jobId",
    "invoice": "invoiceId",
    "payment": "paymentId",
}
# Webhook event types are "<family>.<action>"; these actions exist for every family.
ACTIONS: dict[str, Op] = {"created": "upsert", "updated": "upsert", "deleted": "delete"}
# Families Ascora announces that hold nothing we sync (its leads, quotes, job notes,
# attachments, timesheets, bookings, stock and compliance forms): counted as ignored.
IGNORED_FAMILIES = frozenset(
    {"lead", "quote", "note", "attachment", "timesheet", "booking", "inventory", "form"}
)

JOB_STATUSES: dict[str, str] = {
    "Draft": "draft",
    "Scheduled": "scheduled",
    "InProgress": "in_progress",
    "Completed": "completed",
    "Cancelled": "cancelled",
}
JOB_STATUSES_OUT = {canonical: ascora for ascora, canonical in JOB_STATUSES.items()}
JOB_PRIORITIES: dict[str, str] = {
    "Low": "low",
    "Normal": "normal",
    "High": "high",
    "Urgent": "urgent",
}
JOB_PRIORITIES_OUT = {canonical: ascora for ascora, canonical in JOB_PRIORITIES.items()}
# PartiallyPaid is still open to the customer; canonical has no separate state for it.
INVOICE_STATUSES: dict[str, str] = {
    "Draft": "draft",
    "Sent": "open",
    "PartiallyPaid": "open",
    "Paid": "paid",
    "Overdue": "overdue",
    "Void": "void",
}
# Paid, PartiallyPaid and Overdue are Ascora's own conclusions from payments and the due
# date: they are never written, only read.
INVOICE_STATUSES_OUT: dict[str, str] = {"draft": "Draft", "open": "Sent", "void": "Void"}
PAYMENT_STATUSES: dict[str, str] = {
    "Pending": "pending",
    "Completed": "succeeded",
    "Failed": "failed",
    "Refunded": "refunded",
}
PAYMENT_STATUSES_OUT = {canonical: ascora for ascora, canonical in PAYMENT_STATUSES.items()}

# Canonical address field -> Ascora field, for a customer's street address and a job's site.
CUSTOMER_ADDRESS: dict[str, str] = {
    "line1": "streetLine1",
    "line2": "streetLine2",
    "city": "streetSuburb",
    "region": "streetState",
    "postal_code": "streetPostcode",
    "country": "streetCountry",
}
JOB_ADDRESS: dict[str, str] = {
    "line1": "addressLine1",
    "line2": "addressLine2",
    "city": "suburb",
    "region": "state",
    "postal_code": "postcode",
    "country": "country",
}
# Canonical field -> the Ascora field it comes from (names the path in error details).
FIELD_SOURCES: dict[EntityType, dict[str, str]] = {
    "customer": {
        "name": "customerName",
        "email": "emailAddress",
        "phone": "phoneNumber",
        "company": "companyName",
        "notes": "notes",
        "address": "streetLine1",
    },
    "job": {
        "title": "jobName",
        "description": "jobDescription",
        "status": "status",
        "priority": "priority",
        "scheduled_start": "scheduledStart",
        "scheduled_end": "scheduledEnd",
        "site_address": "addressLine1",
    },
    "invoice": {
        "number": "invoiceNumber",
        "status": "status",
        "currency": "currency",
        "issued_on": "invoiceDate",
        "due_on": "dueDate",
        "lines": "lines",
        "subtotal": "totalExTax",
        "tax": "totalTax",
        "total": "totalIncTax",
        "amount_due": "balanceDue",
    },
    "payment": {
        "amount": "amount",
        "currency": "currency",
        "status": "status",
        "method": "paymentMethod",
        "paid_at": "paymentDate",
        "reference": "reference",
    },
}
# Canonical reference field -> Ascora's id field, per entity.
REFERENCES: dict[EntityType, dict[str, str]] = {
    "customer": {},
    "job": {"customer_id": "customerId"},
    "invoice": {"customer_id": "customerId", "job_id": "jobId"},
    "payment": {"invoice_id": "invoiceId", "customer_id": "customerId"},
}
EVENT_ID_HEADER = "webhook-id"


def holds_back(entity_type: EntityType, data: Mapping[str, Any]) -> str | None:
    """Why Ascora cannot hold this record yet (connectors.spec.ApiSpec.holds_back).
    Ascora records pending payments but never edits a payment ("delete and record
    again"): a card payment pushed while pending would stay pending there after it
    succeeded. So a pending payment waits until it has settled."""
    if entity_type == "payment" and data.get("status") == "pending":
        return (
            "Ascora never edits a payment: a pending one waits until it has settled,"
            " or it would stay pending there"
        )
    return None


@with_field_overrides
class Mapper:
    """Ascora's RecordMapper. Settings are not consulted beyond ``field_overrides``:
    Ascora's shapes are the same for every company, and each record states its currency."""

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        """One event per delivery; ``webhook-id`` (signed) is its id, full record inside."""
        event_id = clean_text(headers.get(EVENT_ID_HEADER, "").strip())
        if event_id is None:
            raise MappingError("schema_violation", f"headers.{EVENT_ID_HEADER}: missing")
        payload = json_body(body, "body: not a JSON document")
        if not isinstance(payload, dict):
            raise MappingError("schema_violation", "body: expected a JSON object")
        event_type = require(payload, "type")
        if not isinstance(event_type, str):
            raise MappingError("schema_violation", "type: expected a string")
        occurred_at = _timestamp(require(payload, "timestamp"), "timestamp")
        data = require(payload, "data")
        if not isinstance(data, Mapping):
            raise MappingError("schema_violation", "data: expected an object")
        family, _, action = event_type.partition(".")
        if family in IGNORED_FAMILIES:
            return WebhookParse(items=(), ignored=1)
        entity_type = _entity_type(family)
        if entity_type is None or action not in ACTIONS:
            raise MappingError("unknown_event_type", f"type: {event_type!r} is not an Ascora event")
        op = ACTIONS[action]
        record: RemoteRecord | None = None
        if op == "delete":
            external_id = _id(data, ID_FIELDS[entity_type], "data.")
        else:
            record = _record(entity_type, data, "data.")
            external_id = record.external_id
        item = WebhookItem(
            event_id=bounded_event_id(event_id),
            entity_type=entity_type,
            external_id=external_id,
            op=op,
            occurred_at=occurred_at,
            record=record,
        )
        return WebhookParse(items=(item,))

    def to_canonical(
        self, entity_type: EntityType, obj: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> RemoteRecord:
        if entity_type not in ENTITY_TYPES:
            raise MappingError("unsupported_entity", f"ascora has no {entity_type!r} records")
        if not isinstance(obj, Mapping):
            raise MappingError("schema_violation", f"{entity_type}: expected an object")
        return _record(entity_type, obj, "")

    def from_canonical(
        self,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The create/update body: only the fields ``data`` carries (absent = unchanged,
        None = cleared), plus the references ``refs`` names. Canonical reference fields in
        ``data`` hold canonical ids, meaningless to Ascora, so they are left out."""
        if entity_type not in ENTITY_TYPES:
            raise MappingError("unsupported_entity", f"ascora has no {entity_type!r} records")
        fields = {k: v for k, v in data.items() if k not in REFERENCE_FIELDS}
        try:
            model = ENTITY_MODELS[entity_type].model_validate(fields)
        except ValidationError as exc:
            raise MappingError("schema_violation", _canonical_problem(exc)) from None
        canonical = model.model_dump(mode="json", exclude_unset=True)
        body = _WRITERS[entity_type](canonical)
        for ref_field, ascora_field in REFERENCES[entity_type].items():
            if ref_field in refs:
                body[ascora_field] = refs[ref_field]
        return body


# --- reading -------------------------------------------------------------------------------


def _entity_type(family: str) -> EntityType | None:
    for entity_type in ENTITY_TYPES:
        if entity_type == family:
            return entity_type
    return None


def _record(entity_type: EntityType, obj: Mapping[str, Any], prefix: str) -> RemoteRecord:
    external_id = _id(obj, ID_FIELDS[entity_type], prefix)
    updated_at = _timestamp(_at(obj, "lastModified", prefix), f"{prefix}lastModified")
    data = _READERS[entity_type](obj, prefix)
    refs: dict[str, str] = {}
    for ref_field, ascora_field in REFERENCES[entity_type].items():
        if ascora_field in obj and (value := _text(obj, ascora_field, prefix)) is not None:
            refs[ref_field] = value
    return RemoteRecord(
        entity_type=entity_type,
        external_id=external_id,
        updated_at=updated_at,
        data=_validated(entity_type, data, prefix),
        refs=refs,
    )


def _validated(entity_type: EntityType, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``data`` as the canonical model spells it, or MappingError naming the Ascora field."""
    try:
        model = ENTITY_MODELS[entity_type].model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        source = FIELD_SOURCES[entity_type].get(loc[0], loc[0]) if loc else entity_type
        raise MappingError(
            "schema_violation",
            f"{prefix}{source}: {error['msg']} (canonical {'.'.join(loc) or entity_type})",
        ) from None
    return model.model_dump(mode="json", exclude_unset=True)


def _at(obj: Mapping[str, Any], key: str, prefix: str) -> Any:
    if key not in obj:
        raise MappingError("schema_violation", f"{prefix}{key}: missing")
    return obj[key]


def _id(obj: Mapping[str, Any], key: str, prefix: str) -> str:
    value = _at(obj, key, prefix)
    text = clean_text(value) if isinstance(value, str) else None
    if text is None:
        raise MappingError("schema_violation", f"{prefix}{key}: expected a non-empty string id")
    return text


def _text(obj: Mapping[str, Any], key: str, prefix: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{prefix}{key}: expected a string")
    return value


def _timestamp(value: object, path: str) -> datetime:
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected an ISO 8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise MappingError("schema_violation", f"{path}: timestamp has no UTC offset")
    return parsed.astimezone(UTC)


def _optional_timestamp(obj: Mapping[str, Any], key: str, prefix: str) -> datetime | None:
    value = obj.get(key)
    return None if value is None or value == "" else _timestamp(value, f"{prefix}{key}")


def _optional_date(obj: Mapping[str, Any], key: str, prefix: str) -> date | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{prefix}{key}: expected a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise MappingError("schema_violation", f"{prefix}{key}: {value!r} is not a date") from None


def _enum(obj: Mapping[str, Any], key: str, table: Mapping[str, str], prefix: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in table:
        raise MappingError(
            "schema_violation",
            f"{prefix}{key}: {value!r} is not one of {', '.join(table)}",
        )
    return table[value]


def _address(
    obj: Mapping[str, Any], fields: Mapping[str, str], prefix: str
) -> dict[str, str | None] | None:
    address = {canonical: _text(obj, ascora, prefix) for canonical, ascora in fields.items()}
    if address["country"] is not None:
        address["country"] = address["country"].upper()
    return address if any(value is not None for value in address.values()) else None


def _copy_present(
    obj: Mapping[str, Any],
    data: dict[str, Any],
    read: Mapping[str, Callable[[], Any]],
    sources: Mapping[str, str],
) -> None:
    """Set each canonical field whose Ascora field the object carries at all.

    A field the object omits stays unset (unchanged); one it carries as null or "" is set
    to None (cleared).
    """
    for canonical, reader in read.items():
        if sources[canonical] in obj:
            data[canonical] = reader()


def _read_customer(obj: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    def name() -> str | None:
        given = _text(obj, "customerName", prefix)
        if given is not None:
            return given
        parts = (_text(obj, "contactFirstName", prefix), _text(obj, "contactLastName", prefix))
        return " ".join(part for part in parts if part) or None

    def phone() -> str | None:
        # Sole traders often leave the landline blank and give only a mobile.
        return _text(obj, "phoneNumber", prefix) or _text(obj, "mobileNumber", prefix)

    data: dict[str, Any] = {}
    _copy_present(
        obj,
        data,
        {
            "name": name,
            "email": lambda: _text(obj, "emailAddress", prefix),
            "phone": phone,
            "company": lambda: _text(obj, "companyName", prefix),
            "notes": lambda: _text(obj, "notes", prefix),
            "address": lambda: _address(obj, CUSTOMER_ADDRESS, prefix),
        },
        FIELD_SOURCES["customer"],
    )
    if "address" not in data and any(key in obj for key in CUSTOMER_ADDRESS.values()):
        data["address"] = _address(obj, CUSTOMER_ADDRESS, prefix)
    return data


def _read_job(obj: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    _copy_present(
        obj,
        data,
        {
            "title": lambda: _text(obj, "jobName", prefix),
            "description": lambda: _text(obj, "jobDescription", prefix),
            "status": lambda: _enum(obj, "status", JOB_STATUSES, prefix),
            "scheduled_start": lambda: _optional_timestamp(obj, "scheduledStart", prefix),
            "scheduled_end": lambda: _optional_timestamp(obj, "scheduledEnd", prefix),
            "site_address": lambda: _address(obj, JOB_ADDRESS, prefix),
        },
        FIELD_SOURCES["job"],
    )
    if "site_address" not in data and any(key in obj for key in JOB_ADDRESS.values()):
        data["site_address"] = _address(obj, JOB_ADDRESS, prefix)
    # Canonical priority has a default ("normal"): a null from Ascora means just that.
    if obj.get("priority") is not None:
        data["priority"] = _enum(obj, "priority", JOB_PRIORITIES, prefix)
    return data


def _currency(obj: Mapping[str, Any], prefix: str) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", f"{prefix}currency: missing, amounts need it")
    return value


def _read_invoice(obj: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    currency = _currency(obj, prefix)

    def amount(key: str) -> int | None:
        value = obj.get(key)
        return None if value is None else to_minor(value, currency, f"{prefix}{key}")

    def lines() -> list[dict[str, Any]] | None:
        value = obj.get("lines")
        if value is None:
            return None
        if not isinstance(value, list):
            raise MappingError("schema_violation", f"{prefix}lines: expected a list")
        return [_read_line(line, currency, f"{prefix}lines.{i}.") for i, line in enumerate(value)]

    data: dict[str, Any] = {"currency": currency}
    _copy_present(
        obj,
        data,
        {
            "number": lambda: _text(obj, "invoiceNumber", prefix),
            "status": lambda: _enum(obj, "status", INVOICE_STATUSES, prefix),
            "issued_on": lambda: _optional_date(obj, "invoiceDate", prefix),
            "due_on": lambda: _optional_date(obj, "dueDate", prefix),
            "lines": lines,
            "subtotal": lambda: amount("totalExTax"),
            "tax": lambda: amount("totalTax"),
            "total": lambda: amount("totalIncTax"),
            "amount_due": lambda: amount("balanceDue"),
        },
        FIELD_SOURCES["invoice"],
    )
    return data


def _read_line(line: object, currency: str, prefix: str) -> dict[str, Any]:
    if not isinstance(line, Mapping):
        raise MappingError("schema_violation", f"{prefix.rstrip('.')}: expected an object")
    tax = line.get("taxAmount")
    return {
        "description": _text(line, "description", prefix),
        "quantity": parse_decimal(_at(line, "quantity", prefix), f"{prefix}quantity"),
        "unit_amount": to_minor(_at(line, "unitPrice", prefix), currency, f"{prefix}unitPrice"),
        "tax_amount": 0 if tax is None else to_minor(tax, currency, f"{prefix}taxAmount"),
    }


def _read_payment(obj: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    currency = _currency(obj, prefix)
    data: dict[str, Any] = {"currency": currency}

    def amount() -> int | None:
        value = obj.get("amount")
        return None if value is None else to_minor(value, currency, f"{prefix}amount")

    _copy_present(
        obj,
        data,
        {
            "amount": amount,
            "status": lambda: _enum(obj, "status", PAYMENT_STATUSES, prefix),
            "method": lambda: _text(obj, "paymentMethod", prefix),
            "paid_at": lambda: _optional_timestamp(obj, "paymentDate", prefix),
            "reference": lambda: _text(obj, "reference", prefix),
        },
        FIELD_SOURCES["payment"],
    )
    return data


_READERS: dict[EntityType, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "customer": _read_customer,
    "job": _read_job,
    "invoice": _read_invoice,
    "payment": _read_payment,
}


# --- writing (from canonical JSON, as model_dump(mode="json") spells it) ------------------


def _canonical_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    loc = ".".join(str(part) for part in error["loc"]) or "data"
    return f"data.{loc}: {error['msg']}"


def _rename(canonical: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    return {ascora: canonical[field] for field, ascora in names.items() if field in canonical}


def _write_address(
    canonical: Mapping[str, Any], key: str, fields: Mapping[str, str]
) -> dict[str, Any]:
    if key not in canonical:
        return {}
    address = canonical[key] or {}
    return {ascora: address.get(field) for field, ascora in fields.items()}


def _need_currency(canonical: Mapping[str, Any], what: str) -> str:
    currency = canonical.get("currency")
    if currency is None:
        raise MappingError("schema_violation", f"data.currency: missing, {what} need it")
    return str(currency)


def _write_customer(canonical: Mapping[str, Any]) -> dict[str, Any]:
    body = _rename(
        canonical,
        {
            "name": "customerName",
            "email": "emailAddress",
            "phone": "phoneNumber",
            "company": "companyName",
            "notes": "notes",
        },
    )
    return body | _write_address(canonical, "address", CUSTOMER_ADDRESS)


def _write_job(canonical: Mapping[str, Any]) -> dict[str, Any]:
    body = _rename(
        canonical,
        {
            "title": "jobName",
            "description": "jobDescription",
            "scheduled_start": "scheduledStart",
            "scheduled_end": "scheduledEnd",
        },
    )
    # Every Ascora job has a status: a cleared canonical status leaves Ascora's as it is.
    if canonical.get("status") is not None:
        body["status"] = JOB_STATUSES_OUT[canonical["status"]]
    if "priority" in canonical:
        body["priority"] = JOB_PRIORITIES_OUT[canonical["priority"]]
    return body | _write_address(canonical, "site_address", JOB_ADDRESS)


def _write_invoice(canonical: Mapping[str, Any]) -> dict[str, Any]:
    body = _rename(
        canonical,
        {
            "number": "invoiceNumber",
            "currency": "currency",
            "issued_on": "invoiceDate",
            "due_on": "dueDate",
        },
    )
    if canonical.get("status") in INVOICE_STATUSES_OUT:
        body["status"] = INVOICE_STATUSES_OUT[canonical["status"]]
    if "lines" in canonical:
        lines = canonical["lines"]
        if lines is None:
            body["lines"] = []
        else:
            currency = _need_currency(canonical, "invoice lines")
            body["lines"] = [
                {
                    "description": line.get("description"),
                    "quantity": line["quantity"],
                    "unitPrice": to_decimal_string(
                        line["unit_amount"], currency, f"data.lines.{i}.unit_amount"
                    ),
                    "taxAmount": to_decimal_string(
                        line.get("tax_amount", 0), currency, f"data.lines.{i}.tax_amount"
                    ),
                }
                for i, line in enumerate(lines)
            ]
    return body


def _write_payment(canonical: Mapping[str, Any]) -> dict[str, Any]:
    body = _rename(
        canonical,
        {
            "currency": "currency",
            "method": "paymentMethod",
            "paid_at": "paymentDate",
            "reference": "reference",
        },
    )
    if canonical.get("amount") is not None:
        currency = _need_currency(canonical, "amounts")
        body["amount"] = to_decimal_string(canonical["amount"], currency, "data.amount")
    if canonical.get("status") is not None:
        body["status"] = PAYMENT_STATUSES_OUT[canonical["status"]]
    return body


_WRITERS: dict[EntityType, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "customer": _write_customer,
    "job": _write_job,
    "invoice": _write_invoice,
    "payment": _write_payment,
}
