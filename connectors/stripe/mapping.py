"""Stripe objects <-> canonical records; Stripe Events -> webhook items.

Stripe's webhooks are full: each Event carries the object as it was when the event
happened (``data.object``), so every item comes with its record. Customers, invoices and
payments map; a PaymentIntent is a payment, and so is a Charge (as the payment of its
PaymentIntent when it has one, so a refund lands on the same record).

Stripe objects have no last-modified field. A webhook item's ``updated_at`` is the Event's
``created``; an API object's is the latest timestamp it carries itself (``created``, the
invoice's ``status_transitions``, a PaymentIntent's ``canceled_at`` or latest charge), which
the API client raises to the moment it read the object (see client.py).

Amounts are integer minor units on both sides: Stripe's zero-decimal currencies (JPY, KRW,
…) and three-decimal ones (KWD, BHD, …) use ISO 4217's exponent too, so an amount is copied,
never scaled. Fractional unit prices (``unit_amount_decimal``) are read with Decimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from connectors.kinds import Kind, KindMapper
from connectors.overrides import with_field_overrides
from connectors.spec import (
    EntityType,
    MappingError,
    Op,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
    json_body_object,
)
from schemas.records import ENTITY_MODELS, line_amount

# The Events this connector syncs (Stripe's event type list), and what each one means.
# Other types (checkout.session.completed, invoice.sent, customer.subscription.*, …) are
# counted as ignored.
SYNCED_EVENTS: dict[str, tuple[EntityType, Op]] = {
    "customer.created": ("customer", "upsert"),
    "customer.updated": ("customer", "upsert"),
    "customer.deleted": ("customer", "delete"),
    "invoice.created": ("invoice", "upsert"),
    "invoice.updated": ("invoice", "upsert"),
    "invoice.finalized": ("invoice", "upsert"),
    "invoice.paid": ("invoice", "upsert"),
    "invoice.voided": ("invoice", "upsert"),
    "invoice.marked_uncollectible": ("invoice", "upsert"),
    "invoice.deleted": ("invoice", "delete"),
    "payment_intent.created": ("payment", "upsert"),
    "payment_intent.succeeded": ("payment", "upsert"),
    "payment_intent.payment_failed": ("payment", "upsert"),
    "payment_intent.canceled": ("payment", "upsert"),
    "charge.refunded": ("payment", "upsert"),
}
# The Stripe ``object`` each event family carries in ``data.object``.
_EVENT_OBJECTS = {
    "customer": "customer",
    "invoice": "invoice",
    "payment_intent": "payment_intent",
    "charge": "charge",
}
EVENT_TYPES_BY_ENTITY: dict[EntityType, tuple[str, ...]] = {
    entity: tuple(t for t, (e, _) in SYNCED_EVENTS.items() if e == entity)
    for entity in ("customer", "invoice", "payment")
}

# Canonical fields Stripe has no attribute for, kept in the object's metadata.
COMPANY_KEY = "company"
INVOICE_REF_KEY = "crmsync_invoice_id"
# A line whose quantity is fractional goes to Stripe as one unit of the exact product
# (invoice items take integer quantities only); these keep the canonical pair.
LINE_QUANTITY_KEY = "crmsync_quantity"
LINE_UNIT_KEY = "crmsync_unit_amount"

_INVOICE_STATUS = {
    "draft": "draft",
    "open": "open",
    "paid": "paid",
    "void": "void",
    # Written off, but Stripe still accepts payment on it: it is not void.
    "uncollectible": "open",
}
_CHARGE_STATUS = {"succeeded": "succeeded", "pending": "pending", "failed": "failed"}

# Where each canonical field comes from, to name the Stripe path when validation fails.
_SOURCES: dict[str, dict[str, str]] = {
    "customer": {
        "name": "name",
        "email": "email",
        "phone": "phone",
        "company": f"metadata.{COMPANY_KEY}",
        "address": "address",
        "notes": "description",
    },
    "invoice": {
        "number": "number",
        "status": "status",
        "currency": "currency",
        "issued_on": "effective_at",
        "due_on": "due_date",
        "lines": "lines.data",
        "subtotal": "total_excluding_tax",
        "tax": "total",
        "total": "total",
        "amount_due": "amount_remaining",
    },
    "payment": {
        "amount": "amount",
        "currency": "currency",
        "status": "status",
        "method": "payment_method_types",
        "paid_at": "latest_charge.created",
        "reference": "description",
    },
}


def _read(
    entity_type: EntityType, obj: Mapping[str, Any], settings: Mapping[str, Any]
) -> RemoteRecord:
    """An object read from the API, stamped with the latest time it records itself."""
    return record_for(entity_type, obj, object_time(entity_type, obj), settings)


@with_field_overrides
class Mapper(KindMapper):
    """Stripe's RecordMapper. Settings read: ``timezone`` (IANA name, default UTC), the
    zone in which Stripe timestamps such as ``due_date`` become calendar dates."""

    kinds: ClassVar[Mapping[EntityType, Kind]] = {
        "customer": Kind(
            read=lambda obj, settings: _read("customer", obj, settings),
            write=lambda data, refs, settings: _customer_params(data),
        ),
        "invoice": Kind(
            read=lambda obj, settings: _read("invoice", obj, settings),
            write=lambda data, refs, settings: _invoice_params(data, refs, _zone(settings)),
        ),
        "payment": Kind(
            read=lambda obj, settings: _read("payment", obj, settings),
            write=lambda data, refs, settings: _payment_params(data, refs),
        ),
    }
    unsupported = "Stripe has no such records"

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        item = event_item(json_body_object(body, "an Event"), settings)
        if item is None:
            return WebhookParse(items=(), ignored=1)
        if item.entity_type == "invoice" and item.op == "upsert":
            # Stripe builds an invoice in steps (draft, each item, tax, finalize) with an
            # Event at each; the snapshot in one is a half-built invoice. Checked above, then
            # dropped: the processor hydrates the invoice as it is when it gets there.
            item = replace(item, record=None)
        return WebhookParse(items=(item,))


# --- events ---------------------------------------------------------------------------------


def event_item(event: Mapping[str, Any], settings: Mapping[str, Any]) -> WebhookItem | None:
    """The item one Stripe Event announces, or None for an event type we do not sync.

    Shared by webhooks and by the client's incremental poll of ``GET /v1/events``.
    """
    if event.get("object", "event") != "event":
        raise MappingError("schema_violation", 'object: expected "event"')
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MappingError("schema_violation", "id: expected the Event id (a string)")
    event_type = event.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise MappingError("schema_violation", "type: expected the event type (a string)")
    occurred_at = _timestamp(event.get("created"), "created")
    synced = SYNCED_EVENTS.get(event_type)
    if synced is None:
        return None
    entity_type, op = synced
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise MappingError("schema_violation", "data.object: missing or not an object")
    expected = _EVENT_OBJECTS[event_type.partition(".")[0]]
    if obj.get("object") != expected:
        raise MappingError("schema_violation", f'data.object.object: expected "{expected}"')
    external_id = _external_id(entity_type, obj, "data.object")
    if op == "delete":
        return WebhookItem(event_id, entity_type, external_id, op, occurred_at)
    record = record_for(
        entity_type,
        obj,
        occurred_at,
        settings,
        path="data.object",
        refunded=event_type == "charge.refunded",
        succeeded_at=occurred_at if event_type == "payment_intent.succeeded" else None,
    )
    return WebhookItem(event_id, entity_type, external_id, op, occurred_at, record)


# --- Stripe objects -> canonical -------------------------------------------------------------


def record_for(
    entity_type: EntityType,
    obj: Mapping[str, Any],
    updated_at: datetime,
    settings: Mapping[str, Any],
    *,
    path: str = "",
    refunded: bool = False,
    succeeded_at: datetime | None = None,
) -> RemoteRecord:
    """``obj`` as a RemoteRecord stamped ``updated_at``.

    ``refunded`` marks a Charge from a ``charge.refunded`` event (Stripe sends it for partial
    refunds too); ``succeeded_at`` is the time a PaymentIntent succeeded when the object
    itself does not say (its latest charge not expanded).
    """
    if obj.get("deleted") is True:
        raise MappingError(
            "schema_violation", _at(path, "deleted: a deleted object's stub has no fields")
        )
    external_id = _external_id(entity_type, obj, path)
    if entity_type == "customer":
        _expect_object(obj, "customer", path)
        data, refs = _customer_data(obj, path), {}
    elif entity_type == "invoice":
        _expect_object(obj, "invoice", path)
        data, refs = _invoice_data(obj, path, _zone(settings)), _invoice_refs(obj)
    elif entity_type == "payment":
        kind = obj.get("object")
        if kind == "payment_intent":
            data = _intent_data(obj, path, succeeded_at)
        elif kind == "charge":
            data = _charge_data(obj, path, refunded=refunded)
        else:
            raise MappingError(
                "schema_violation", _at(path, 'object: expected "payment_intent" or "charge"')
            )
        refs = _payment_refs(obj)
    else:
        raise MappingError("unsupported_entity", f"{entity_type}: Stripe has no such records")
    return RemoteRecord(
        entity_type=entity_type,
        external_id=external_id,
        updated_at=updated_at,
        data=_validated(entity_type, data, path),
        refs=refs,
    )


def object_time(entity_type: EntityType, obj: Mapping[str, Any]) -> datetime:
    """The latest moment ``obj`` itself records (Stripe keeps no last-modified time)."""
    stamps = [obj.get("created")]
    transitions = obj.get("status_transitions")
    if isinstance(transitions, Mapping):
        stamps.extend(transitions.values())
    stamps.append(obj.get("canceled_at"))
    charge = obj.get("latest_charge")
    if isinstance(charge, Mapping):
        stamps.append(charge.get("created"))
        stamps.extend(_refund_times(charge))
    if obj.get("object") == "charge":
        stamps.extend(_refund_times(obj))
    seconds = [s for s in stamps if isinstance(s, int) and not isinstance(s, bool)]
    if not seconds:
        raise MappingError("schema_violation", "created: expected a unix timestamp")
    return datetime.fromtimestamp(max(seconds), UTC)


def _refund_times(charge: Mapping[str, Any]) -> list[Any]:
    refunds = charge.get("refunds")
    data = refunds.get("data") if isinstance(refunds, Mapping) else None
    if not isinstance(data, list):
        return []
    return [r.get("created") for r in data if isinstance(r, Mapping)]


def _external_id(entity_type: EntityType, obj: Mapping[str, Any], path: str) -> str:
    if entity_type == "payment" and obj.get("object") == "charge":
        intent = _id_of(obj.get("payment_intent"))
        if intent is not None:
            return intent
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", _at(path, "id: expected a string"))
    return value


def _customer_data(obj: Mapping[str, Any], path: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in ("name", "email", "phone"):
        if field in obj:
            data[field] = _text(obj[field], _at(path, field)) or None
    if "description" in obj:
        data["notes"] = _text(obj["description"], _at(path, "description"))
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping) and COMPANY_KEY in metadata:
        data["company"] = _text(metadata[COMPANY_KEY], _at(path, f"metadata.{COMPANY_KEY}")) or None
    if "address" in obj:
        data["address"] = _address(obj["address"], _at(path, "address"))
    return data


def _address(value: Any, path: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise MappingError("schema_violation", f"{path}: expected an object")
    address = {
        "line1": value.get("line1"),
        "line2": value.get("line2"),
        "city": value.get("city"),
        "region": value.get("state"),
        "postal_code": value.get("postal_code"),
        "country": value.get("country"),
    }
    address = {k: (_text(v, f"{path}.{k}") or None) for k, v in address.items()}
    return None if all(v is None for v in address.values()) else address


def _invoice_data(obj: Mapping[str, Any], path: str, zone: ZoneInfo) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if "number" in obj:
        data["number"] = _text(obj["number"], _at(path, "number"))
    status = obj.get("status")
    if status is not None:
        if status not in _INVOICE_STATUS:
            raise MappingError(
                "schema_violation", _at(path, f"status: unknown invoice status {status!r}")
            )
        data["status"] = _INVOICE_STATUS[status]
    if "currency" in obj:
        data["currency"] = _currency(obj["currency"], _at(path, "currency"))
    issued = _issued_at(obj)
    if issued is not None:
        data["issued_on"] = _date(issued, zone, _at(path, "effective_at")).isoformat()
    if "due_date" in obj:
        due = obj["due_date"]
        data["due_on"] = (
            None if due is None else _date(due, zone, _at(path, "due_date")).isoformat()
        )
    lines = obj.get("lines")
    if isinstance(lines, Mapping) and lines.get("has_more") is not True:
        data["lines"] = _lines(lines.get("data"), _at(path, "lines.data"))
    data.update(_totals(obj, path))
    remaining = obj.get("amount_remaining", obj.get("amount_due"))
    if remaining is not None:
        data["amount_due"] = _int(remaining, _at(path, "amount_remaining"))
    return data


def _issued_at(obj: Mapping[str, Any]) -> Any:
    """Stripe's "date of issue": ``effective_at`` (set, or finalisation), else creation."""
    if obj.get("effective_at") is not None:
        return obj["effective_at"]
    transitions = obj.get("status_transitions")
    if isinstance(transitions, Mapping) and transitions.get("finalized_at") is not None:
        return transitions["finalized_at"]
    return obj.get("created")


def _totals(obj: Mapping[str, Any], path: str) -> dict[str, int]:
    """Subtotal after discounts and before tax, tax, total; ``total = subtotal + tax``.

    API versions differ: ``total_excluding_tax`` (2022-08-01 on), the older ``tax``, or
    ``total_taxes`` (2025-03-31 on); whichever is there gives the split.
    """
    if obj.get("total") is None:
        return {}
    total = _int(obj["total"], _at(path, "total"))
    if obj.get("total_excluding_tax") is not None:
        subtotal = _int(obj["total_excluding_tax"], _at(path, "total_excluding_tax"))
        return {"subtotal": subtotal, "tax": total - subtotal, "total": total}
    if obj.get("tax") is not None:
        tax = _int(obj["tax"], _at(path, "tax"))
        return {"subtotal": total - tax, "tax": tax, "total": total}
    taxes = obj.get("total_taxes")
    if isinstance(taxes, list):
        tax = sum(
            _int(t.get("amount") if isinstance(t, Mapping) else t, _at(path, f"total_taxes.{i}"))
            for i, t in enumerate(taxes)
        )
        return {"subtotal": total - tax, "tax": tax, "total": total}
    return {"total": total}


def _lines(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise MappingError("schema_violation", f"{path}: expected a list")
    return [_line(line, f"{path}.{i}") for i, line in enumerate(value)]


def _line(line: Any, path: str) -> dict[str, Any]:
    if not isinstance(line, Mapping):
        raise MappingError("schema_violation", f"{path}: expected an object")
    amount = _int(line.get("amount"), f"{path}.amount")
    metadata = line.get("metadata")
    quantity, unit = _line_quantity_and_unit(
        line, metadata if isinstance(metadata, Mapping) else {}, amount, path
    )
    # Per-tax amounts: ``tax_amounts`` up to 2025-03-31, ``taxes`` since.
    key = "tax_amounts" if isinstance(line.get("tax_amounts"), list) else "taxes"
    taxes = line.get(key)
    tax = 0
    for i, entry in enumerate(taxes if isinstance(taxes, list) else []):
        value = entry.get("amount") if isinstance(entry, Mapping) else entry
        tax += _int(value, f"{path}.{key}.{i}.amount")
    return {
        "description": _text(line.get("description"), f"{path}.description"),
        "quantity": format(quantity, "f"),
        "unit_amount": unit,
        "tax_amount": tax,
    }


def _line_quantity_and_unit(
    line: Mapping[str, Any], metadata: Mapping[str, Any], amount: int, path: str
) -> tuple[Decimal, int]:
    if LINE_QUANTITY_KEY in metadata and LINE_UNIT_KEY in metadata:
        quantity = _decimal(metadata[LINE_QUANTITY_KEY], f"{path}.metadata.{LINE_QUANTITY_KEY}")
        unit = _decimal(metadata[LINE_UNIT_KEY], f"{path}.metadata.{LINE_UNIT_KEY}")
        if unit == unit.to_integral_value():
            return quantity, int(unit)
    raw_quantity = line.get("quantity")
    quantity = (
        Decimal(1) if raw_quantity is None else Decimal(_int(raw_quantity, f"{path}.quantity"))
    )
    unit_text = _unit_amount_text(line)
    if unit_text is not None:
        unit = _decimal(unit_text, f"{path}.unit_amount_decimal")
        if unit == unit.to_integral_value():
            return quantity, int(unit)
    elif quantity and amount % quantity == 0:
        return quantity, int(amount // quantity)
    # A sub-minor-unit price (unit_amount_decimal "0.35") fits no integer unit amount: the
    # line keeps its exact total as one unit.
    return Decimal(1), amount


def _unit_amount_text(line: Mapping[str, Any]) -> Any:
    for container in ("pricing", "price"):
        node = line.get(container)
        if isinstance(node, Mapping):
            if node.get("unit_amount_decimal") is not None:
                return node["unit_amount_decimal"]
            if node.get("unit_amount") is not None:
                return str(node["unit_amount"])
    return line.get("unit_amount_excluding_tax")


def _invoice_refs(obj: Mapping[str, Any]) -> dict[str, str]:
    customer = _id_of(obj.get("customer"))
    return {"customer_id": customer} if customer else {}


def _intent_data(
    obj: Mapping[str, Any], path: str, succeeded_at: datetime | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "amount": _int(obj.get("amount"), _at(path, "amount")),
        "currency": _currency(obj.get("currency"), _at(path, "currency")),
    }
    status = obj.get("status")
    charge = obj.get("latest_charge") if isinstance(obj.get("latest_charge"), Mapping) else None
    if charge is not None and _is_refunded(charge):
        data["status"] = "refunded"
    elif status == "succeeded":
        data["status"] = "succeeded"
    elif status == "canceled" or (
        status == "requires_payment_method" and obj.get("last_payment_error") is not None
    ):
        data["status"] = "failed"
    elif isinstance(status, str):
        data["status"] = "pending"
    else:
        raise MappingError("schema_violation", _at(path, "status: expected a string"))
    method = _charge_method(charge) if charge is not None else None
    types = obj.get("payment_method_types")
    if method is None and isinstance(types, list) and len(types) == 1:
        method = types[0]
    if method is not None:
        data["method"] = _text(method, _at(path, "payment_method_types"))
    if data["status"] in ("succeeded", "refunded"):
        paid = charge.get("created") if charge is not None else None
        if paid is not None:
            data["paid_at"] = _timestamp(paid, _at(path, "latest_charge.created")).isoformat()
        elif succeeded_at is not None:
            data["paid_at"] = succeeded_at.isoformat()
    if "description" in obj:
        data["reference"] = _text(obj["description"], _at(path, "description"))
    return data


def _charge_data(obj: Mapping[str, Any], path: str, *, refunded: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "amount": _int(obj.get("amount"), _at(path, "amount")),
        "currency": _currency(obj.get("currency"), _at(path, "currency")),
    }
    status = obj.get("status")
    if refunded or _is_refunded(obj):
        data["status"] = "refunded"
    elif status in _CHARGE_STATUS:
        data["status"] = _CHARGE_STATUS[status]
    else:
        raise MappingError(
            "schema_violation", _at(path, f"status: unknown charge status {status!r}")
        )
    method = _charge_method(obj)
    if method is not None:
        data["method"] = _text(method, _at(path, "payment_method_details.type"))
    if data["status"] in ("succeeded", "refunded"):
        data["paid_at"] = _timestamp(obj.get("created"), _at(path, "created")).isoformat()
    # A PaymentIntent's charge reports on the intent's record: its description belongs to
    # the intent, which has its own events.
    if _id_of(obj.get("payment_intent")) is None and "description" in obj:
        data["reference"] = _text(obj["description"], _at(path, "description"))
    return data


def _is_refunded(charge: Mapping[str, Any]) -> bool:
    refunded = charge.get("amount_refunded")
    return charge.get("refunded") is True or (isinstance(refunded, int) and refunded > 0)


def _charge_method(charge: Mapping[str, Any]) -> Any:
    details = charge.get("payment_method_details")
    return details.get("type") if isinstance(details, Mapping) else None


def _payment_refs(obj: Mapping[str, Any]) -> dict[str, str]:
    refs: dict[str, str] = {}
    customer = _id_of(obj.get("customer"))
    if customer:
        refs["customer_id"] = customer
    invoice = _id_of(obj.get("invoice"))
    metadata = obj.get("metadata")
    if invoice is None and isinstance(metadata, Mapping):
        invoice = _id_of(metadata.get(INVOICE_REF_KEY))
    if invoice:
        refs["invoice_id"] = invoice
    return refs


# --- canonical -> Stripe parameters ----------------------------------------------------------


def _customer_params(data: Mapping[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for field in ("name", "email", "phone"):
        if field in data:
            params[field] = data[field]
    if "notes" in data:
        params["description"] = data["notes"]
    if "company" in data:
        params["metadata"] = {COMPANY_KEY: data["company"]}
    if "address" in data:
        address = data["address"]
        params["address"] = (
            None
            if address is None
            else {
                "line1": address.get("line1"),
                "line2": address.get("line2"),
                "city": address.get("city"),
                "state": address.get("region"),
                "postal_code": address.get("postal_code"),
                "country": address.get("country"),
            }
        )
    return params


def _invoice_params(
    data: Mapping[str, Any], refs: Mapping[str, str], zone: ZoneInfo
) -> dict[str, Any]:
    """POST /v1/invoices parameters, plus ``lines``: one POST /v1/invoiceitems parameter set
    per line (Stripe adds lines to a draft invoice through invoice items).

    Totals, tax and amount due are Stripe's to compute; status moves through the invoice's
    own endpoints (finalize, pay, void), which the client calls.
    """
    params: dict[str, Any] = {}
    if "customer_id" in refs:
        params["customer"] = refs["customer_id"]
    currency = data.get("currency")
    if currency is not None:
        params["currency"] = str(currency).lower()
    if "number" in data:
        params["number"] = data["number"]
    if "due_on" in data:
        params["due_date"] = _day_start(data["due_on"], zone)
    if "issued_on" in data:
        params["effective_at"] = _day_start(data["issued_on"], zone)
    if data.get("lines") is not None:
        params["lines"] = [_line_params(line, currency) for line in data["lines"]]
        # Not invoice item parameters: each line's tax is set on its invoice line once the
        # item exists (the client pops these), so Stripe's total is ours.
        params["line_taxes"] = [int(line.get("tax_amount") or 0) for line in data["lines"]]
        _check_stripe_total(data)
    return params


def _check_stripe_total(data: Mapping[str, Any]) -> None:
    """Refuse an invoice whose lines Stripe would total differently from ours.

    Stripe totals an invoice from its lines: each line's amount (quantity times unit, rounded)
    plus the tax amounts set on it. Canonical lines need not reach the canonical total
    (Xero's tax-inclusive lines, invoice-level discounts); pushing those would bill another
    amount in silence, so the push is a dead letter that shows both totals instead.
    """
    total = data.get("total")
    if total is None:
        return
    lines = data["lines"]
    subtotal = sum(
        line_amount(Decimal(str(ln["quantity"])), int(ln["unit_amount"])) for ln in lines
    )
    tax = sum(int(ln.get("tax_amount") or 0) for ln in lines)
    if subtotal + tax != total:
        raise MappingError(
            "totals_mismatch",
            f"Stripe would total this invoice's lines as {subtotal + tax} ({subtotal} + tax "
            f"{tax}); the invoice's total is {total} ({data.get('subtotal')} + tax "
            f"{data.get('tax')}): not pushed",
        )


def line_tax_params(tax: int, taxable: int) -> dict[str, Any]:
    """``POST /v1/invoices/{id}/lines/{line}`` parameters that set a line's tax to ``tax``
    (Stripe's manual tax amounts). Stripe requires a rate with every amount; its percentage
    is for display only (at most 4 decimals, 0-100), the amount is what is billed."""
    percentage = Decimal(0)
    if taxable:
        percentage = (Decimal(abs(tax)) * 100 / abs(taxable)).quantize(Decimal("0.0001"))
    percentage = min(percentage, Decimal(100))
    return {
        "tax_amounts": [
            {
                "amount": tax,
                "taxable_amount": taxable,
                "tax_rate_data": {
                    "display_name": "Tax",
                    "inclusive": False,
                    "percentage": _plain(percentage),
                },
            }
        ]
        if tax
        else ""
    }


def _line_params(line: Mapping[str, Any], currency: Any) -> dict[str, Any]:
    quantity = Decimal(str(line["quantity"]))
    unit = int(line["unit_amount"])
    params: dict[str, Any] = {}
    if line.get("description") is not None:
        params["description"] = line["description"]
    if currency is not None:
        params["currency"] = str(currency).lower()
    if quantity == quantity.to_integral_value():
        params["quantity"] = int(quantity)
        params["unit_amount_decimal"] = str(unit)
    else:
        params["quantity"] = 1
        params["unit_amount_decimal"] = _plain(quantity * unit)
        params["metadata"] = {LINE_QUANTITY_KEY: _plain(quantity), LINE_UNIT_KEY: str(unit)}
    return params


def _payment_params(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """POST /v1/payment_intents parameters. Status and paid_at are Stripe's own (a payment
    succeeds by being confirmed and charged), so they are not sent."""
    params: dict[str, Any] = {}
    if "amount" in data:
        params["amount"] = data["amount"]
    if data.get("currency") is not None:
        params["currency"] = str(data["currency"]).lower()
    if "customer_id" in refs:
        params["customer"] = refs["customer_id"]
    if "reference" in data:
        params["description"] = data["reference"]
    if data.get("method") is not None:
        params["payment_method_types"] = [data["method"]]
    if "invoice_id" in refs:
        params["metadata"] = {INVOICE_REF_KEY: refs["invoice_id"]}
    return params


# --- small parsers -------------------------------------------------------------------------


def _validated(entity_type: EntityType, data: dict[str, Any], path: str) -> dict[str, Any]:
    model = ENTITY_MODELS[entity_type]
    try:
        record = model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        source = _SOURCES.get(entity_type, {}).get(field, field)
        rest = ".".join(str(p) for p in error["loc"][1:])
        where = _at(path, source) + (f" ({field}.{rest})" if rest else "")
        raise MappingError("schema_violation", f"{where}: {error['msg']}") from None
    return record.model_dump(mode="json", exclude_unset=True)


def _at(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _expect_object(obj: Mapping[str, Any], kind: str, path: str) -> None:
    if obj.get("object", kind) != kind:
        raise MappingError("schema_violation", _at(path, f'object: expected "{kind}"'))


def _id_of(value: Any) -> str | None:
    """An id, or the id of an expanded object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _text(value: Any, path: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MappingError("schema_violation", f"{path}: expected a string")


def _int(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MappingError("schema_violation", f"{path}: expected an integer (minor units)")


def _decimal(value: Any, path: str) -> Decimal:
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            number = Decimal("NaN")
        if number.is_finite():
            return number
    raise MappingError("schema_violation", f"{path}: expected a decimal string")


def _currency(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected a currency code")
    return value.upper()


def _timestamp(value: Any, path: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return datetime.fromtimestamp(value, UTC)
    raise MappingError("schema_violation", f"{path}: expected a unix timestamp")


def _date(value: Any, zone: ZoneInfo, path: str) -> date:
    return _timestamp(value, path).astimezone(zone).date()


def _day_start(value: Any, zone: ZoneInfo) -> int | None:
    """Midnight of an ISO date in ``zone``, as unix seconds (None stays None: unset)."""
    if value is None:
        return None
    day = value if isinstance(value, date) else date.fromisoformat(str(value))
    return int(datetime.combine(day, time(0), zone).timestamp())


def _plain(value: Decimal) -> str:
    """Fixed-point text without trailing zeros ("2.50" -> "2.5", "3.000" -> "3")."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _zone(settings: Mapping[str, Any]) -> ZoneInfo:
    name = settings.get("timezone") or "UTC"
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingError(
            "schema_violation", f"settings.timezone: unknown zone {name!r}"
        ) from None
