"""Shopify REST Admin API objects <-> canonical records; Shopify webhooks -> items.

Pure functions of their inputs. Shopify writes money as decimal strings in the shop's
currency (``"199.00"``), scaled here by the currency's ISO 4217 exponent, never through a
float; ids are integers (kept as their decimal text); times are ISO 8601 with the shop's
offset (``2024-05-01T09:30:00-04:00``).

What maps to what (README: field mapping and assumptions):

- a Shopify customer is a canonical customer;
- an order is a canonical invoice: Shopify has no invoices, and an order is what the
  merchant bills (its ``financial_status`` says how much of it is paid);
- a transaction of kind ``sale`` or ``capture`` is a canonical payment. Shopify reads a
  transaction only through its order (``/orders/{order_id}/transactions/{id}.json``), so
  its external id is ``"<order id>:<transaction id>"``; authorizations, voids and refunds
  carry no payment of their own and are ignored.

A webhook's body is the resource itself; what it is comes from ``X-Shopify-Topic``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from connectors.base import body_hash_id, bounded_event_id, header_event_id
from connectors.kinds import Kind, KindMapper, settings_free
from connectors.money import decimal_of, exact_percent, exponent
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

TOPIC_HEADER = "x-shopify-topic"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
TRIGGERED_AT_HEADER = "x-shopify-triggered-at"

# The webhook topics we sync (Shopify's "Webhook topics" reference); others are counted
# as ignored. Every one of them carries the whole resource, except the deletes (``{"id"}``).
TOPICS: dict[str, tuple[EntityType, str]] = {
    "customers/create": ("customer", "upsert"),
    "customers/update": ("customer", "upsert"),
    "customers/delete": ("customer", "delete"),
    "orders/create": ("invoice", "upsert"),
    "orders/updated": ("invoice", "upsert"),
    "orders/paid": ("invoice", "upsert"),
    "orders/cancelled": ("invoice", "upsert"),
    "orders/delete": ("invoice", "delete"),
    "order_transactions/create": ("payment", "upsert"),
}

# Order.financial_status values and what each is canonically (a cancelled order is void
# whatever its financial status: ``cancelled_at`` is read first).
FINANCIAL_STATUS_IN: dict[str, str] = {
    "pending": "open",
    "authorized": "open",
    "partially_paid": "open",
    "paid": "paid",
    "partially_refunded": "paid",
    "refunded": "paid",
    "voided": "void",
}
# Financial states in which Shopify still owes nothing back and has taken no money: the
# only orders this connector cancels or deletes (README: assumptions).
UNPAID = frozenset({"pending", "authorized"})
# Transaction kinds that move money to the merchant: the ones that are payments.
PAYMENT_KINDS = frozenset({"sale", "capture"})
# Transaction.status values.
TRANSACTION_STATUS_IN: dict[str, str] = {
    "success": "succeeded",
    "pending": "pending",
    "failure": "failed",
    "error": "failed",
}
# The gateway Shopify names for a payment recorded by hand; canonically it says nothing
# about how the money came, so it reads as no method (and no method writes as it).
MANUAL_GATEWAY = "manual"
SEPARATOR = ":"


def payment_id(order_id: object, transaction_id: object) -> str:
    return f"{order_id}{SEPARATOR}{transaction_id}"


def split_payment_id(external_id: str) -> tuple[str, str] | None:
    order_id, sep, transaction_id = external_id.partition(SEPARATOR)
    if sep and order_id.isdigit() and transaction_id.isdigit():
        return order_id, transaction_id
    return None


def _id(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise MappingError("schema_violation", f"{path}.{key}: expected Shopify's numeric id")
    return str(value)


def shopify_time(value: datetime) -> str:
    """A time as Shopify's REST API writes it: ISO 8601 with an offset, seconds."""
    return value.astimezone(UTC).isoformat(timespec="seconds")


def to_minor(value: object, currency: str, path: str) -> int:
    """A Shopify decimal string in ``currency`` as integer minor units."""
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected a decimal string")
    scaled = decimal_of(value, path).scaleb(exponent(currency, path))
    if scaled != scaled.to_integral_value():
        raise MappingError("schema_violation", f"{path}: {value} has more places than {currency}")
    return int(scaled)


def decimal_text(amount: int, currency: str) -> str:
    """Minor units as Shopify's decimal string (the currency's own number of places)."""
    places = exponent(currency, "currency")
    return f"{Decimal(amount).scaleb(-places):.{places}f}"


def _currency(obj: Mapping[str, Any], path: str) -> str:
    currency = obj.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise MappingError("schema_violation", f"{path}.currency: expected a currency code")
    return currency


# --- customers ------------------------------------------------------------------------------

_ADDRESS_IN = {
    "address1": "line1",
    "address2": "line2",
    "city": "city",
    "province": "region",
    "zip": "postal_code",
    "country_code": "country",
}


def _customer(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    names = [_text(obj, "first_name", path), _text(obj, "last_name", path)]
    raw: dict[str, Any] = {
        "name": " ".join(n for n in names if n) or None,
        "email": _text(obj, "email", path),
        "phone": _text(obj, "phone", path),
        "notes": _text(obj, "note", path),
        "company": None,
        "address": None,
    }
    address = obj.get("default_address")
    if isinstance(address, Mapping):
        raw["company"] = _text(address, "company", f"{path}.default_address")
        fields = {ours: address.get(theirs) or None for theirs, ours in _ADDRESS_IN.items()}
        raw["address"] = fields if any(fields.values()) else None
    return RemoteRecord(
        entity_type="customer",
        external_id=_id(obj, "id", path),
        updated_at=parse_time(obj.get("updated_at"), f"{path}.updated_at"),
        data=canonical_data("customer", raw, f"{path}: "),
    )


def customer_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A Customer's create/update fields. The canonical name is split at its last space
    (Shopify keeps first and last names; they join back to the same text). The company
    and the address are the customer's default address (``addresses[0]``), whose ``id``
    the client adds on update so Shopify edits it rather than adding another."""
    body: dict[str, Any] = {}
    if "name" in data:
        first, _, last = (data["name"] or "").strip().rpartition(" ")
        body["first_name"], body["last_name"] = (first, last) if first else (last, "")
    for ours, theirs in (("email", "email"), ("phone", "phone"), ("notes", "note")):
        if ours in data:
            body[theirs] = data[ours] or None
    if "address" in data or "company" in data:
        address = data.get("address") or {}
        default: dict[str, Any] = {
            theirs: address.get(ours) or None for theirs, ours in _ADDRESS_IN.items()
        }
        default["company"] = data.get("company") or None
        default["default"] = True
        body["addresses"] = [default]
    return body


# --- invoices (orders) ----------------------------------------------------------------------


def _invoice(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    currency = _currency(obj, path)
    financial = obj.get("financial_status")
    if financial not in FINANCIAL_STATUS_IN:
        raise MappingError(
            "schema_violation", f"{path}.financial_status: {financial!r} is not Shopify's"
        )
    status = "void" if obj.get("cancelled_at") else FINANCIAL_STATUS_IN[financial]
    total = to_minor(obj.get("total_price"), currency, f"{path}.total_price")
    tax = to_minor(obj.get("total_tax") or "0", currency, f"{path}.total_tax")
    outstanding = obj.get("total_outstanding")
    due = total if outstanding is None else to_minor(outstanding, currency, "total_outstanding")
    raw: dict[str, Any] = {
        "number": _text(obj, "name", path),
        "status": status,
        "currency": currency,
        "lines": [_line(item, currency, f"{path}.line_items.{i}") for i, item in _items(obj, path)],
        # Shipping and discounts live in the total and not on a line: the subtotal is what
        # is left of the total after tax, so subtotal + tax = total always (README).
        "subtotal": total - tax,
        "tax": tax,
        "total": total,
        "amount_due": 0 if status in ("void", "paid") else max(0, due),
    }
    issued = _text(obj, "processed_at", path) or _text(obj, "created_at", path)
    if issued is not None:
        # The day in the shop's own offset, as the merchant sees it.
        raw["issued_on"] = _local_day(issued, f"{path}.processed_at")
    due_on = _due_day(obj, path)
    if due_on is not None:
        raw["due_on"] = due_on
    refs: dict[str, str] = {}
    customer = obj.get("customer")
    if isinstance(customer, Mapping) and customer.get("id") is not None:
        refs["customer_id"] = _id(customer, "id", f"{path}.customer")
    return RemoteRecord(
        entity_type="invoice",
        external_id=_id(obj, "id", path),
        updated_at=parse_time(obj.get("updated_at"), f"{path}.updated_at"),
        data=canonical_data("invoice", raw, f"{path}: "),
        refs=refs,
    )


def _items(obj: Mapping[str, Any], path: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = obj.get("line_items") or []
    if not isinstance(items, list):
        raise MappingError("schema_violation", f"{path}.line_items: expected a list")
    return [(i, _object(item, f"{path}.line_items.{i}")) for i, item in enumerate(items)]


def _line(item: Mapping[str, Any], currency: str, path: str) -> dict[str, Any]:
    quantity = item.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise MappingError("schema_violation", f"{path}.quantity: expected an integer")
    tax = 0
    for index, tax_line in enumerate(item.get("tax_lines") or []):
        where = f"{path}.tax_lines.{index}"
        tax += to_minor(_object(tax_line, where).get("price"), currency, f"{where}.price")
    return {
        "description": _text(item, "title", path),
        "quantity": str(quantity),
        "unit_amount": to_minor(item.get("price"), currency, f"{path}.price"),
        "tax_amount": tax,
    }


def _local_day(value: str, path: str) -> str:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date().isoformat()
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not a time") from None


def _due_day(obj: Mapping[str, Any], path: str) -> str | None:
    terms = obj.get("payment_terms")
    if not isinstance(terms, Mapping):
        return None
    schedules = terms.get("payment_schedules") or []
    if not isinstance(schedules, list) or not schedules or not isinstance(schedules[0], Mapping):
        return None
    due_at = schedules[0].get("due_at")
    return _local_day(due_at, f"{path}.payment_terms") if isinstance(due_at, str) else None


def invoice_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """An Order's fields for a create (``POST /orders.json``). ``status`` says what the
    client does beside it (README): Shopify has no draft order in the Orders API, and an
    order is cancelled, not set to a status."""
    order: dict[str, Any] = {}
    if "number" in data:
        order["name"] = data["number"]
    if "currency" in data:
        order["currency"] = data["currency"]
    if data.get("issued_on"):
        order["processed_at"] = f"{data['issued_on']}T00:00:00+00:00"
    if "customer_id" in refs:
        order["customer"] = {"id": int(refs["customer_id"])}
    if "due_on" in data:
        order["payment_terms"] = payment_terms(data["due_on"])
    if data.get("lines") is not None:
        currency = data.get("currency")
        if not isinstance(currency, str):
            raise MappingError("schema_violation", "currency: lines need the invoice's currency")
        order["line_items"] = [_item(line, currency, i) for i, line in enumerate(data["lines"])]
    body: dict[str, Any] = {"order": order}
    if "status" in data:
        body["status"] = data["status"]
    return body


def payment_terms(due_on: str | None) -> dict[str, Any] | None:
    """The order's payment terms for a due day: one schedule, due at the day's start
    (UTC); None clears them (README: assumptions)."""
    if not due_on:
        return None
    return {"payment_schedules": [{"due_at": f"{due_on}T00:00:00+00:00"}]}


def _item(line: Mapping[str, Any], currency: str, index: int) -> dict[str, Any]:
    try:
        quantity = Decimal(str(line.get("quantity", "1")))
    except InvalidOperation:
        raise MappingError("schema_violation", f"lines.{index}.quantity: not a number") from None
    if quantity != quantity.to_integral_value() or quantity <= 0:
        raise MappingError(
            "schema_violation",
            f"lines.{index}.quantity: Shopify sells whole, positive quantities, not {quantity}",
        )
    unit = int(line.get("unit_amount", 0))
    item: dict[str, Any] = {
        "title": line.get("description") or "Item",
        "quantity": int(quantity),
        "price": decimal_text(unit, currency),
    }
    tax = int(line.get("tax_amount") or 0)
    if tax:
        # Shopify takes the tax line's amount as given; the rate beside it is what the
        # amount is of the line (informational), to four places when exact, else rounded.
        gross = line_amount(quantity, unit)
        percent = exact_percent(tax, gross) or format(
            (Decimal(tax) * 100 / Decimal(gross or 1)).quantize(Decimal("0.0001")), "f"
        )
        item["tax_lines"] = [
            {
                "title": "Tax",
                "price": decimal_text(tax, currency),
                "rate": format(Decimal(percent) / 100, "f"),
            }
        ]
    return item


# --- payments (transactions) ----------------------------------------------------------------


def _payment(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    kind = obj.get("kind")
    if kind not in PAYMENT_KINDS:
        raise MappingError(
            "schema_violation", f"{path}.kind: a {kind!r} transaction is not a payment"
        )
    status = obj.get("status")
    if status not in TRANSACTION_STATUS_IN:
        raise MappingError("schema_violation", f"{path}.status: {status!r} is not Shopify's")
    currency = _currency(obj, path)
    order_id = _id(obj, "order_id", path)
    gateway = _text(obj, "gateway", path)
    stamp = obj.get("processed_at") or obj.get("created_at")
    at = parse_time(stamp, f"{path}.processed_at")
    raw: dict[str, Any] = {
        "amount": to_minor(obj.get("amount"), currency, f"{path}.amount"),
        "currency": currency,
        "status": TRANSACTION_STATUS_IN[status],
        "method": None if gateway in (None, MANUAL_GATEWAY) else gateway,
        "reference": _text(obj, "authorization", path),
        "paid_at": at.isoformat() if status == "success" else None,
    }
    return RemoteRecord(
        entity_type="payment",
        external_id=payment_id(order_id, _id(obj, "id", path)),
        # A transaction is never edited: the time it was processed is its last change.
        updated_at=at,
        data=canonical_data("payment", raw, f"{path}: "),
        refs={"invoice_id": order_id},
    )


def payment_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """A ``sale`` transaction recording money received outside Shopify, and its order."""
    if "status" in data and data["status"] != "succeeded":
        raise MappingError(
            "schema_violation",
            f"status: Shopify records a payment received outside it as a successful sale "
            f"only, not {data['status']!r}",
        )
    currency = data.get("currency")
    if not isinstance(currency, str) or not isinstance(data.get("amount"), int):
        raise MappingError("schema_violation", "amount, currency: a payment needs both")
    transaction: dict[str, Any] = {
        "kind": "sale",
        "status": "success",
        "source": "external",
        "amount": decimal_text(data["amount"], currency),
        "currency": currency,
        "gateway": data.get("method") or MANUAL_GATEWAY,
    }
    if data.get("reference"):
        transaction["authorization"] = data["reference"]
    body: dict[str, Any] = {"transaction": transaction}
    if "invoice_id" in refs:
        body["order_id"] = refs["invoice_id"]
    return body


# --- the mapper -----------------------------------------------------------------------------


def webhook_item(
    obj: Mapping[str, Any], headers: Mapping[str, str], body: bytes
) -> WebhookItem | None:
    """The item one delivery announces, None for a topic (or transaction kind) not synced.
    Its event id is the delivery's ``X-Shopify-Webhook-Id``, else the body's hash: the
    id ingest deduplicated the delivery on (ShopifyScheme.verify)."""
    topic = headers.get(TOPIC_HEADER)
    if topic not in TOPICS:
        return None
    entity_type, op = TOPICS[topic]
    event_id = bounded_event_id(header_event_id(headers, WEBHOOK_ID_HEADER) or body_hash_id(body))
    record: RemoteRecord | None = None
    if op == "delete":
        external_id = _id(obj, "id", "body")
    elif entity_type == "payment":
        if obj.get("kind") not in PAYMENT_KINDS:
            return None
        record = _payment(obj, "transaction")
        external_id = record.external_id
    else:
        record = _customer(obj, "customer") if entity_type == "customer" else _invoice(obj, "order")
        external_id = record.external_id
    triggered = headers.get(TRIGGERED_AT_HEADER)
    if triggered:
        occurred_at = parse_time(triggered, TRIGGERED_AT_HEADER)
    elif record is not None:
        occurred_at = record.updated_at
    else:
        raise MappingError("schema_violation", f"{TRIGGERED_AT_HEADER}: missing on a delete")
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
    """Shopify's RecordMapper; reads no settings."""

    kinds: ClassVar[Mapping[EntityType, Kind]] = settings_free(
        customer=(_customer, "customer", customer_body),
        invoice=(_invoice, "order", invoice_body),
        payment=(_payment, "transaction", payment_body),
    )
    unsupported = "Shopify has no such records"

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        obj = json_body_object(body, "a resource")
        return WebhookParse.of(webhook_item(obj, headers, body))
