"""Square objects <-> canonical records; Square webhook events -> items.

Pure functions of their inputs. Square states money as ``{"amount": <int minor units>,
"currency": "AUD"}`` (its Money object), so amounts are copied, never scaled; timestamps
are RFC 3339 (``2024-05-01T09:30:00.123Z``), dates ``YYYY-MM-DD``.

Two records are composites the client assembles, because one Square object does not hold
what a canonical record needs (README: assumptions):

- an invoice is Square's Invoice plus the Order it bills (``{"invoice": …, "order": …}``):
  the lines and the tax live on the order, the status, number, due date and recipient on
  the invoice;
- a payment is Square's Payment plus, under ``invoice_id``, the invoice whose order it
  paid (Square's Payment names only the order).

Written the other way, ``from_canonical`` gives the client (and the simulator, standing in
for a user of Square's Dashboard) the same composites: an invoice as the order to create
and the invoice to create on it, a payment as an EXTERNAL payment naming the invoice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from connectors.kinds import Kind, KindMapper, settings_free
from connectors.money import exact_percent
from connectors.overrides import with_field_overrides
from connectors.spec import (
    EntityType,
    MappingError,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
    canonical_data,
    json_body_object,
)
from connectors.spec import json_object as _object
from connectors.spec import optional_text as _text
from connectors.spec import rfc3339_time as parse_time
from schemas.records import line_amount

# Square's webhook event types we sync (Square's "Webhook events" reference); others are
# counted as ignored. Customers arrive whole; invoices and payments are fetched, because
# the event carries neither the order's lines nor the invoice a payment settles.
EVENTS: dict[str, tuple[EntityType, str]] = {
    "customer.created": ("customer", "upsert"),
    "customer.updated": ("customer", "upsert"),
    "customer.deleted": ("customer", "delete"),
    "invoice.created": ("invoice", "upsert"),
    "invoice.updated": ("invoice", "upsert"),
    "invoice.published": ("invoice", "upsert"),
    "invoice.payment_made": ("invoice", "upsert"),
    "invoice.canceled": ("invoice", "upsert"),
    "invoice.refunded": ("invoice", "upsert"),
    "invoice.scheduled_charge_failed": ("invoice", "upsert"),
    "invoice.deleted": ("invoice", "delete"),
    "payment.created": ("payment", "upsert"),
    "payment.updated": ("payment", "upsert"),
}
FULL_EVENTS = frozenset({"customer"})

# Square's InvoiceStatus values and what each one is canonically.
INVOICE_STATUS_IN: dict[str, str] = {
    "DRAFT": "draft",
    "UNPAID": "open",
    "SCHEDULED": "open",
    "PARTIALLY_PAID": "open",
    "PAYMENT_PENDING": "open",
    "PAID": "paid",
    "PARTIALLY_REFUNDED": "paid",
    "REFUNDED": "paid",
    "CANCELED": "void",
    "FAILED": "void",
}
# Square's Payment.status values.
PAYMENT_STATUS_IN: dict[str, str] = {
    "APPROVED": "pending",
    "PENDING": "pending",
    "COMPLETED": "succeeded",
    "CANCELED": "failed",
    "FAILED": "failed",
}
# What a payment pushed from elsewhere is at Square: money received outside Square
# (``source_id: EXTERNAL``), described as "OTHER" with us as its source.
EXTERNAL_SOURCE = "crmsync"
# Square's ExternalPaymentDetails.type values.
EXTERNAL_TYPES = frozenset(
    {
        "CHECK",
        "BANK_TRANSFER",
        "OTHER_GIFT_CARD",
        "CRYPTO",
        "SQUARE_CASH",
        "SOCIAL",
        "EXTERNAL",
        "EMONEY",
        "CARD",
        "STORED_BALANCE",
        "FOOD_VOUCHER",
        "OTHER",
    }
)


def _id(obj: Mapping[str, Any], path: str) -> str:
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", f"{path}.id: expected a non-empty id")
    return value


def square_time(value: datetime) -> str:
    """A time as Square writes it: UTC, milliseconds, ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _money(value: object, path: str) -> tuple[int, str]:
    money = _object(value, path)
    amount, currency = money.get("amount"), money.get("currency")
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise MappingError("schema_violation", f"{path}.amount: expected integer minor units")
    if not isinstance(currency, str):
        raise MappingError("schema_violation", f"{path}.currency: expected a currency code")
    return amount, currency


def _version(obj: Mapping[str, Any]) -> str | None:
    version = obj.get("version")
    return str(version) if isinstance(version, int) and not isinstance(version, bool) else None


# --- customers ------------------------------------------------------------------------------

_ADDRESS_IN = {
    "address_line_1": "line1",
    "address_line_2": "line2",
    "locality": "city",
    "administrative_district_level_1": "region",
    "postal_code": "postal_code",
    "country": "country",
}


def _customer(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    names = [_text(obj, "given_name", path), _text(obj, "family_name", path)]
    raw: dict[str, Any] = {
        "name": " ".join(n for n in names if n) or None,
        "email": _text(obj, "email_address", path),
        "phone": _text(obj, "phone_number", path),
        "company": _text(obj, "company_name", path),
        "notes": _text(obj, "note", path),
    }
    address = obj.get("address")
    if isinstance(address, Mapping):
        fields = {ours: address.get(theirs) or None for theirs, ours in _ADDRESS_IN.items()}
        raw["address"] = fields if any(fields.values()) else None
    else:
        raw["address"] = None
    return RemoteRecord(
        entity_type="customer",
        external_id=_id(obj, path),
        updated_at=parse_time(obj.get("updated_at"), f"{path}.updated_at"),
        data=canonical_data("customer", raw, f"{path}: "),
        version=_version(obj),
    )


def customer_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A Customer's create/update fields. The whole name goes in ``given_name`` (canonical
    customers have one name; Square shows given + family): README, assumptions."""
    body: dict[str, Any] = {}
    if "name" in data:
        body["given_name"] = data["name"] or ""
        body["family_name"] = ""
    for ours, theirs in (
        ("email", "email_address"),
        ("phone", "phone_number"),
        ("company", "company_name"),
        ("notes", "note"),
    ):
        if ours in data:
            body[theirs] = data[ours] or ""
    if "address" in data:
        address = data["address"] or {}
        body["address"] = {theirs: address.get(ours) or "" for theirs, ours in _ADDRESS_IN.items()}
    return body


# --- invoices -------------------------------------------------------------------------------


def _invoice(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    invoice = _object(obj.get("invoice"), f"{path}.invoice")
    order = obj.get("order")
    where = f"{path}.invoice"
    status = invoice.get("status")
    if status not in INVOICE_STATUS_IN:
        raise MappingError("schema_violation", f"{where}.status: {status!r} is not Square's")
    requests = invoice.get("payment_requests") or []
    if not isinstance(requests, list) or not requests:
        raise MappingError("schema_violation", f"{where}.payment_requests: expected one")
    balance = _object(requests[0], f"{where}.payment_requests.0")
    raw: dict[str, Any] = {
        "number": _text(invoice, "invoice_number", where),
        "status": INVOICE_STATUS_IN[status],
        "due_on": _text(balance, "due_date", f"{where}.payment_requests.0"),
        "issued_on": _text(invoice, "sale_or_service_date", where),
    }
    if isinstance(order, Mapping):
        raw.update(_order_amounts(order, f"{path}.order"))
        computed = balance.get("computed_amount_money")
        paid = balance.get("total_completed_amount_money")
        if computed is not None:
            total, _ = _money(computed, f"{where}.payment_requests.0.computed_amount_money")
            done = _money(paid, "paid")[0] if isinstance(paid, Mapping) else 0
            raw["amount_due"] = max(0, total - done)
        if raw["status"] == "void" or raw["status"] == "paid":
            raw["amount_due"] = 0
    refs: dict[str, str] = {}
    recipient = invoice.get("primary_recipient")
    if isinstance(recipient, Mapping) and isinstance(recipient.get("customer_id"), str):
        refs["customer_id"] = recipient["customer_id"]
    return RemoteRecord(
        entity_type="invoice",
        external_id=_id(invoice, where),
        updated_at=parse_time(invoice.get("updated_at"), f"{where}.updated_at"),
        data=canonical_data("invoice", raw, f"{path}: "),
        refs=refs,
        version=_version(invoice),
    )


def _order_amounts(order: Mapping[str, Any], path: str) -> dict[str, Any]:
    total, currency = _money(order.get("total_money"), f"{path}.total_money")
    tax = _money(order.get("total_tax_money") or {"amount": 0, "currency": currency}, "tax")[0]
    lines = []
    for index, raw in enumerate(order.get("line_items") or []):
        where = f"{path}.line_items.{index}"
        item = _object(raw, where)
        unit, _ = _money(item.get("base_price_money"), f"{where}.base_price_money")
        try:
            quantity = Decimal(str(item.get("quantity", "1")))
        except InvalidOperation:
            raise MappingError("schema_violation", f"{where}.quantity: not a number") from None
        line_tax = item.get("total_tax_money")
        lines.append(
            {
                "description": item.get("name") or None,
                "quantity": str(quantity),
                "unit_amount": unit,
                "tax_amount": _money(line_tax, f"{where}.total_tax_money")[0]
                if isinstance(line_tax, Mapping)
                else 0,
            }
        )
    return {
        "currency": currency,
        "lines": lines,
        "subtotal": total - tax,
        "tax": tax,
        "total": total,
        "amount_due": total,
    }


def invoice_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """``{"order": {...}, "invoice": {...}, "publish": bool}``: the order to create (only
    when lines are given), the invoice fields, and whether to publish it (canonical
    ``open`` or later: Square sends a published invoice, a draft it keeps)."""
    invoice: dict[str, Any] = {}
    if "number" in data:
        invoice["invoice_number"] = data["number"]
    if "issued_on" in data:
        invoice["sale_or_service_date"] = data["issued_on"]
    if "due_on" in data:
        invoice["payment_requests"] = [{"request_type": "BALANCE", "due_date": data["due_on"]}]
    if "customer_id" in refs:
        invoice["primary_recipient"] = {"customer_id": refs["customer_id"]}
    body: dict[str, Any] = {"invoice": invoice}
    if data.get("lines") is not None:
        currency = data.get("currency")
        if not isinstance(currency, str):
            raise MappingError("schema_violation", "currency: lines need the invoice's currency")
        body["order"] = {
            "line_items": [_line_item(line, currency, i) for i, line in enumerate(data["lines"])]
        }
    if "status" in data:
        body["publish"] = data["status"] in ("open", "overdue", "paid")
        body["cancel"] = data["status"] == "void"
    return body


def _line_item(line: Mapping[str, Any], currency: str, index: int) -> dict[str, Any]:
    quantity = Decimal(str(line.get("quantity", "1")))
    unit = int(line.get("unit_amount", 0))
    item: dict[str, Any] = {
        "name": line.get("description") or "Item",
        "quantity": format(quantity.normalize(), "f"),
        "base_price_money": {"amount": unit, "currency": currency},
    }
    tax = int(line.get("tax_amount") or 0)
    if tax:
        # Square computes tax from a rate on the line; a rate that reproduces the amount
        # exactly is sent as a line-scoped ad hoc tax, anything else is refused.
        percent = exact_percent(tax, line_amount(quantity, unit))
        if percent is None:
            raise MappingError(
                "schema_violation",
                f"lines.{index}.tax_amount: Square computes line tax from a percentage, and "
                f"no percentage of {line_amount(quantity, unit)} gives exactly {tax}",
            )
        item["taxes"] = [{"name": "Tax", "type": "ADDITIVE", "percentage": percent}]
    return item


# --- payments -------------------------------------------------------------------------------


def _payment(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    amount, currency = _money(obj.get("amount_money"), f"{path}.amount_money")
    status = obj.get("status")
    if status not in PAYMENT_STATUS_IN:
        raise MappingError("schema_violation", f"{path}.status: {status!r} is not Square's")
    canonical = PAYMENT_STATUS_IN[status]
    refunded = obj.get("refunded_money")
    if isinstance(refunded, Mapping) and _money(refunded, f"{path}.refunded_money")[0] >= amount:
        canonical = "refunded"
    source = obj.get("source_type")
    details = obj.get("external_details")
    if source == "EXTERNAL" and isinstance(details, Mapping) and details.get("type"):
        # Money received outside Square says how it was received (BANK_TRANSFER, CHECK…).
        source = details["type"]
    raw: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "status": canonical,
        "method": source.lower() if isinstance(source, str) else None,
        "reference": _text(obj, "reference_id", path),
        "paid_at": obj.get("updated_at") if status == "COMPLETED" else None,
    }
    if raw["paid_at"] is not None:
        raw["paid_at"] = parse_time(raw["paid_at"], f"{path}.updated_at").isoformat()
    refs = {}
    if isinstance(obj.get("invoice_id"), str):
        refs["invoice_id"] = obj["invoice_id"]
    if isinstance(obj.get("customer_id"), str):
        refs["customer_id"] = obj["customer_id"]
    return RemoteRecord(
        entity_type="payment",
        external_id=_id(obj, path),
        updated_at=parse_time(obj.get("updated_at"), f"{path}.updated_at"),
        data=canonical_data("payment", raw, f"{path}: "),
        refs=refs,
        version=obj.get("version_token") if isinstance(obj.get("version_token"), str) else None,
    )


def payment_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """An EXTERNAL payment (money received outside Square) and the invoice it pays."""
    body: dict[str, Any] = {}
    if "status" in data and data["status"] != "succeeded":
        raise MappingError(
            "schema_violation",
            f"status: Square records money received outside it as COMPLETED only, not "
            f"{data['status']!r}",
        )
    if "amount" in data or "currency" in data:
        body["amount_money"] = {"amount": data.get("amount"), "currency": data.get("currency")}
    if "reference" in data:
        body["reference_id"] = data["reference"] or ""
    method = str(data.get("method") or "").upper()
    if "method" in data:
        body["external_details"] = {
            "type": method if method in EXTERNAL_TYPES else "OTHER",
            "source": EXTERNAL_SOURCE,
        }
    if "invoice_id" in refs:
        body["invoice_id"] = refs["invoice_id"]
    return body


# --- the mapper -----------------------------------------------------------------------------


def event_item(event: Mapping[str, Any]) -> WebhookItem | None:
    kind = event.get("type")
    if not isinstance(kind, str) or kind not in EVENTS:
        return None
    entity_type, op = EVENTS[kind]
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise MappingError("schema_violation", "event_id: missing")
    occurred_at = parse_time(event.get("created_at"), "created_at")
    data = _object(event.get("data"), "data")
    external_id = data.get("id")
    if not isinstance(external_id, str) or not external_id:
        raise MappingError("schema_violation", "data.id: missing")
    record = None
    if op == "upsert" and entity_type in FULL_EVENTS:
        obj = _object(data.get("object"), "data.object")
        record = _customer(
            _object(obj.get("customer"), "data.object.customer"), "data.object.customer"
        )
    return WebhookItem(
        event_id=event_id,
        entity_type=entity_type,
        external_id=external_id,
        op="delete" if op == "delete" else "upsert",
        occurred_at=occurred_at,
        record=record,
    )


@with_field_overrides
class Mapper(KindMapper):
    """Square's RecordMapper; reads no settings."""

    kinds: ClassVar[Mapping[EntityType, Kind]] = settings_free(
        customer=(_customer, "customer", customer_body),
        invoice=(_invoice, "invoice", invoice_body),
        payment=(_payment, "payment", payment_body),
    )
    unsupported = "Square has no such records"

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        event = json_body_object(body, "an event")
        return WebhookParse.of(event_item(event))


def parse_day(value: str) -> date:
    return date.fromisoformat(value)
