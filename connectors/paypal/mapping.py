"""PayPal objects <-> canonical records; PayPal webhook events -> items.

Pure functions of their inputs. PayPal states money as ``{"currency_code": "AUD",
"value": "10.50"}`` (a decimal string in the currency's own exponent), timestamps as RFC
3339, dates as ``YYYY-MM-DD``.

Record kinds and where PayPal holds them (README: assumptions):

- **invoices** are Invoicing v2 invoices (``INV2-…``);
- **payments** are either captures (Payments v2: money taken through PayPal, ids like
  ``2GG279541U471931P``; refunds are read as the capture they refund, whose status turns
  REFUNDED) or payments recorded against an invoice (an invoice's
  ``payments.transactions[]`` of type EXTERNAL, external id ``<invoice id>:<payment id>``).
  A capture as the client reads it carries ``paypal_invoice_id`` when an invoice's
  transactions name it (the capture itself names only the merchant's invoice text);
- **customers** exist at PayPal only as invoice recipients (``billing_info``): a customer's
  external id is its e-mail address, lower-cased, and its record is the newest billing
  info an invoice gave it (``{"id": email, "update_time": …, **billing_info}``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from connectors.kinds import Kind, KindMapper, settings_free
from connectors.money import decimal_of, exact_percent, exponent, percent_of
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

# PayPal's Invoicing v2 statuses and what each is canonically.
INVOICE_STATUS_IN: dict[str, str] = {
    "DRAFT": "draft",
    "SENT": "open",
    "SCHEDULED": "open",
    "UNPAID": "open",
    "PARTIALLY_PAID": "open",
    "PAYMENT_PENDING": "open",
    "PAID": "paid",
    "MARKED_AS_PAID": "paid",
    "PARTIALLY_REFUNDED": "paid",
    "REFUNDED": "paid",
    "MARKED_AS_REFUNDED": "paid",
    "CANCELLED": "void",
}
# Payments v2 capture statuses.
CAPTURE_STATUS_IN: dict[str, str] = {
    "COMPLETED": "succeeded",
    "PARTIALLY_REFUNDED": "succeeded",
    "PENDING": "pending",
    "DECLINED": "failed",
    "FAILED": "failed",
    "REFUNDED": "refunded",
}
# The webhook events we sync (PayPal's "Webhook event names"); others are ignored.
INVOICE_EVENTS = frozenset(
    {
        "INVOICING.INVOICE.CREATED",
        "INVOICING.INVOICE.UPDATED",
        "INVOICING.INVOICE.SCHEDULED",
        "INVOICING.INVOICE.PAID",
        "INVOICING.INVOICE.CANCELLED",
        "INVOICING.INVOICE.REFUNDED",
    }
)
CAPTURE_EVENTS = frozenset(
    {
        "PAYMENT.CAPTURE.COMPLETED",
        "PAYMENT.CAPTURE.PENDING",
        "PAYMENT.CAPTURE.DENIED",
        "PAYMENT.CAPTURE.DECLINED",
        "PAYMENT.CAPTURE.REVERSED",
    }
)
REFUND_EVENTS = frozenset({"PAYMENT.CAPTURE.REFUNDED"})
# The kinds those events become items of: an invoice event carries its recipient (the
# customer) and the payments recorded on it; capture and refund events a payment.
ROUTED_KINDS: tuple[EntityType, ...] = ("customer", "invoice", "payment")
# Recorded (non-PayPal) payment methods PayPal's RecordPayment takes.
METHODS = frozenset(
    {
        "BANK_TRANSFER",
        "CASH",
        "CHECK",
        "CREDIT_CARD",
        "DEBIT_CARD",
        "PAYPAL",
        "WIRE_TRANSFER",
        "OTHER",
    }
)
RECORDED_SEPARATOR = ":"


def _id(obj: Mapping[str, Any], path: str) -> str:
    """The id of an invoice or a capture: PayPal's ids are non-empty strings."""
    value = obj.get("id")
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", f"{path}.id: missing")
    return value


def paypal_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def to_minor(money: object, path: str) -> tuple[int, str]:
    """PayPal's Money as (minor units, currency)."""
    obj = _object(money, path)
    currency = obj.get("currency_code")
    if not isinstance(currency, str):
        raise MappingError("schema_violation", f"{path}.currency_code: missing")
    value = obj.get("value")
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}.value: expected a decimal string")
    scaled = decimal_of(value, f"{path}.value").scaleb(exponent(currency, path))
    if scaled != scaled.to_integral_value():
        raise MappingError(
            "schema_violation", f"{path}.value: {value} has more places than {currency} has"
        )
    return int(scaled), currency


def money(amount: int, currency: str) -> dict[str, str]:
    """Minor units as PayPal's Money: the value written with the currency's exponent."""
    places = exponent(currency, "currency")
    return {"currency_code": currency, "value": f"{Decimal(amount).scaleb(-places):.{places}f}"}


# --- customers ------------------------------------------------------------------------------

_ADDRESS_IN = {
    "address_line_1": "line1",
    "address_line_2": "line2",
    "admin_area_2": "city",
    "admin_area_1": "region",
    "postal_code": "postal_code",
    "country_code": "country",
}


def customer_id(billing_info: Mapping[str, Any]) -> str | None:
    email = billing_info.get("email_address")
    return email.strip().lower() if isinstance(email, str) and email.strip() else None


def _customer(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    external_id = customer_id(obj)
    if external_id is None:
        raise MappingError("schema_violation", f"{path}.email_address: a recipient needs one")
    name = obj.get("name")
    full = None
    if isinstance(name, Mapping):
        parts = [name.get("given_name"), name.get("surname")]
        full = name.get("full_name") or " ".join(p for p in parts if isinstance(p, str) and p)
    # Only what the recipient carries: an invoice's recipient is often an email alone,
    # and a name sent as None erased the customer's name in every system.
    raw: dict[str, Any] = {"email": external_id}
    if full:
        raw["name"] = full
    company = _text(obj, "business_name", path)
    if company is not None:
        raw["company"] = company
    address = obj.get("address")
    if isinstance(address, Mapping):
        fields = {ours: address.get(theirs) or None for theirs, ours in _ADDRESS_IN.items()}
        if any(fields.values()):
            raw["address"] = fields
    return RemoteRecord(
        entity_type="customer",
        external_id=external_id,
        updated_at=parse_time(obj.get("update_time"), f"{path}.update_time"),
        data=canonical_data("customer", raw, f"{path}: "),
    )


def customer_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A recipient's ``billing_info``; the whole name as ``given_name``. Phones are not
    written: PayPal keeps a country code and a national number of digits, which a free-text
    phone does not split into without a numbering plan."""
    body: dict[str, Any] = {}
    if "email" in data:
        body["email_address"] = data["email"]
    if "name" in data:
        body["name"] = {"given_name": data["name"] or ""}
    if "company" in data:
        body["business_name"] = data["company"] or ""
    if "address" in data:
        address = data["address"] or {}
        body["address"] = {theirs: address.get(ours) or "" for theirs, ours in _ADDRESS_IN.items()}
    return body


def recipient_of(invoice: Mapping[str, Any]) -> Mapping[str, Any] | None:
    recipients = invoice.get("primary_recipients")
    if isinstance(recipients, list) and recipients and isinstance(recipients[0], Mapping):
        info = recipients[0].get("billing_info")
        return info if isinstance(info, Mapping) else None
    return None


def invoice_updated(invoice: Mapping[str, Any]) -> str:
    """An invoice's last update time as PayPal writes it (its creation's, else the epoch)."""
    metadata = (invoice.get("detail") or {}).get("metadata") or {}
    stamp = metadata.get("last_update_time") or metadata.get("create_time")
    return str(stamp) if stamp else "1970-01-01T00:00:00Z"


def recipients(invoices: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The customers PayPal holds in these invoices: per recipient e-mail, the billing info
    of the newest invoice addressed to it with that invoice's update time (the object
    ``to_canonical("customer", …)`` reads)."""
    newest: dict[str, Mapping[str, Any]] = {}
    for invoice in invoices:
        recipient = recipient_of(invoice)
        email = customer_id(recipient) if recipient is not None else None
        if email is not None and (
            email not in newest or invoice_updated(invoice) > invoice_updated(newest[email])
        ):
            newest[email] = invoice
    return [{**(recipient_of(i) or {}), "update_time": invoice_updated(i)} for i in newest.values()]


# --- invoices -------------------------------------------------------------------------------


def _invoice(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    detail = _object(obj.get("detail"), f"{path}.detail")
    status = obj.get("status")
    if status not in INVOICE_STATUS_IN:
        raise MappingError("schema_violation", f"{path}.status: {status!r} is not PayPal's")
    currency = _text(detail, "currency_code", f"{path}.detail")
    term = detail.get("payment_term")
    raw: dict[str, Any] = {
        "number": _text(detail, "invoice_number", f"{path}.detail"),
        "status": INVOICE_STATUS_IN[status],
        "currency": currency,
        "issued_on": _text(detail, "invoice_date", f"{path}.detail"),
        "due_on": term.get("due_date") if isinstance(term, Mapping) else None,
    }
    lines = []
    for index, item in enumerate(obj.get("items") or []):
        lines.append(_line(_object(item, f"{path}.items.{index}"), f"{path}.items.{index}"))
    raw["lines"] = lines
    amount = obj.get("amount")
    if isinstance(amount, Mapping):
        total, _ = to_minor(amount, f"{path}.amount")
        breakdown = amount.get("breakdown")
        tax = 0
        if isinstance(breakdown, Mapping) and breakdown.get("tax_total") is not None:
            tax = to_minor(breakdown["tax_total"], f"{path}.amount.breakdown.tax_total")[0]
        raw.update(subtotal=total - tax, tax=tax, total=total)
        due = obj.get("due_amount")
        raw["amount_due"] = (
            to_minor(due, f"{path}.due_amount")[0] if isinstance(due, Mapping) else total
        )
    metadata = detail.get("metadata")
    stamp = metadata.get("last_update_time") if isinstance(metadata, Mapping) else None
    refs: dict[str, str] = {}
    recipient = recipient_of(obj)
    if recipient is not None and (email := customer_id(recipient)) is not None:
        refs["customer_id"] = email
    return RemoteRecord(
        entity_type="invoice",
        external_id=_id(obj, path),
        updated_at=parse_time(stamp, f"{path}.detail.metadata.last_update_time"),
        data=canonical_data("invoice", raw, f"{path}: "),
        refs=refs,
    )


def _line(item: Mapping[str, Any], path: str) -> dict[str, Any]:
    unit, _ = to_minor(item.get("unit_amount"), f"{path}.unit_amount")
    try:
        quantity = Decimal(str(item.get("quantity", "1")))
    except InvalidOperation:
        raise MappingError("schema_violation", f"{path}.quantity: not a number") from None
    tax = 0
    raw_tax = item.get("tax")
    if isinstance(raw_tax, Mapping):
        if isinstance(raw_tax.get("amount"), Mapping):
            tax = to_minor(raw_tax["amount"], f"{path}.tax.amount")[0]
        elif raw_tax.get("percent") is not None:
            percent = decimal_of(raw_tax["percent"], f"{path}.tax.percent")
            tax = percent_of(line_amount(quantity, unit), percent)
    return {
        "description": item.get("name") or None,
        "quantity": format(quantity.normalize(), "f") if quantity else "0",
        "unit_amount": unit,
        "tax_amount": tax,
    }


def invoice_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """PayPal's create/update invoice body for canonical ``data``, plus ``send`` (canonical
    open or later: a sent invoice is PayPal's "open") and ``cancel`` (void): the client
    turns those into ``/send`` and ``/cancel`` calls and never sends them as fields."""
    detail: dict[str, Any] = {}
    if "number" in data:
        detail["invoice_number"] = data["number"]
    if "currency" in data:
        detail["currency_code"] = data["currency"]
    if "issued_on" in data:
        detail["invoice_date"] = data["issued_on"]
    if "due_on" in data:
        detail["payment_term"] = {"due_date": data["due_on"]}
    body: dict[str, Any] = {"detail": detail}
    if "customer_id" in refs:
        body["primary_recipients"] = [{"billing_info": {"email_address": refs["customer_id"]}}]
    if data.get("lines") is not None:
        currency = data.get("currency")
        if not isinstance(currency, str):
            raise MappingError("schema_violation", "currency: lines need the invoice's currency")
        body["items"] = [_item(line, currency, i) for i, line in enumerate(data["lines"])]
    if "status" in data:
        body["send"] = data["status"] in ("open", "overdue", "paid")
        body["cancel"] = data["status"] == "void"
    return body


def _item(line: Mapping[str, Any], currency: str, index: int) -> dict[str, Any]:
    quantity = Decimal(str(line.get("quantity", "1")))
    unit = int(line.get("unit_amount", 0))
    item: dict[str, Any] = {
        "name": line.get("description") or "Item",
        "quantity": format(quantity.normalize(), "f"),
        "unit_amount": money(unit, currency),
    }
    tax = int(line.get("tax_amount") or 0)
    if tax:
        # PayPal computes an item's tax from its percent: only a percent that gives the
        # amount exactly is sent.
        base = line_amount(quantity, unit)
        percent = exact_percent(tax, base)
        if percent is None:
            raise MappingError(
                "schema_violation",
                f"lines.{index}.tax_amount: PayPal computes item tax from a percent, and no "
                f"percent of {base} gives exactly {tax}",
            )
        item["tax"] = {"name": "Tax", "percent": percent}
    return item


# --- payments -------------------------------------------------------------------------------


def recorded_id(invoice_id: str, payment_id: str) -> str:
    return f"{invoice_id}{RECORDED_SEPARATOR}{payment_id}"


def split_recorded(external_id: str) -> tuple[str, str] | None:
    invoice_id, sep, payment_id = external_id.partition(RECORDED_SEPARATOR)
    return (invoice_id, payment_id) if sep and invoice_id and payment_id else None


def _capture(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    amount, currency = to_minor(obj.get("amount"), f"{path}.amount")
    status = obj.get("status")
    if status not in CAPTURE_STATUS_IN:
        raise MappingError("schema_violation", f"{path}.status: {status!r} is not PayPal's")
    raw: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "status": CAPTURE_STATUS_IN[status],
        "method": "paypal",
        "reference": _text(obj, "custom_id", path) or _text(obj, "invoice_id", path),
        "paid_at": parse_time(obj.get("create_time"), f"{path}.create_time").isoformat()
        if status in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED")
        else None,
    }
    refs = {}
    if isinstance(obj.get("paypal_invoice_id"), str):
        refs["invoice_id"] = obj["paypal_invoice_id"]
    return RemoteRecord(
        entity_type="payment",
        external_id=_id(obj, path),
        updated_at=parse_time(
            obj.get("update_time") or obj.get("create_time"), f"{path}.update_time"
        ),
        data=canonical_data("payment", raw, f"{path}: "),
        refs=refs,
    )


def _recorded(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    """``{"invoice_id": …, "update_time": …, "transaction": {...}}``: a payment recorded
    against an invoice (its transactions[] entry)."""
    transaction = _object(obj.get("transaction"), f"{path}.transaction")
    where = f"{path}.transaction"
    amount, currency = to_minor(transaction.get("amount"), f"{where}.amount")
    day = _text(transaction, "payment_date", where)
    method = _text(transaction, "method", where)
    raw: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "status": "succeeded",
        "method": method.lower() if method else None,
        "reference": _text(transaction, "note", where),
        "paid_at": f"{day}T00:00:00+00:00" if day else None,
    }
    invoice_id = obj.get("invoice_id")
    payment_id = transaction.get("payment_id")
    if not isinstance(invoice_id, str) or not isinstance(payment_id, str):
        raise MappingError("schema_violation", f"{path}: invoice_id and payment_id are needed")
    return RemoteRecord(
        entity_type="payment",
        external_id=recorded_id(invoice_id, payment_id),
        updated_at=parse_time(obj.get("update_time"), f"{path}.update_time"),
        data=canonical_data("payment", raw, f"{path}: "),
        refs={"invoice_id": invoice_id},
    )


def payment_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """A RecordPayment body (money received outside PayPal) and, under ``invoice_id``, the
    invoice it is recorded against (the client puts that in the path)."""
    if "status" in data and data["status"] != "succeeded":
        raise MappingError(
            "schema_violation",
            f"status: PayPal records payments received outside it, not {data['status']!r} ones",
        )
    if "invoice_id" not in refs:
        raise MappingError(
            "schema_violation", "refs.invoice_id: PayPal records a payment on an invoice"
        )
    body: dict[str, Any] = {"invoice_id": refs["invoice_id"], "method": "OTHER"}
    if "amount" in data and "currency" in data:
        body["amount"] = money(int(data["amount"]), str(data["currency"]))
    method = str(data.get("method") or "").upper()
    if method in METHODS:
        body["method"] = method
    if data.get("paid_at"):
        body["payment_date"] = str(data["paid_at"])[:10]
    if "reference" in data:
        body["note"] = data["reference"] or ""
    return body


def _payment(obj: Mapping[str, Any], path: str) -> RemoteRecord:
    return _recorded(obj, path) if "transaction" in obj else _capture(obj, path)


# --- webhooks -------------------------------------------------------------------------------


def _up_capture(refund: Mapping[str, Any]) -> str | None:
    for link in refund.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "up":
            href = link.get("href")
            if isinstance(href, str) and "/captures/" in href:
                return href.rstrip("/").rsplit("/", 1)[-1] or None
    return None


def parse_event(event: Mapping[str, Any]) -> WebhookParse:
    kind = event.get("event_type")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MappingError("schema_violation", "id: missing")
    occurred_at = parse_time(event.get("create_time"), "create_time")
    resource = _object(event.get("resource"), "resource")
    if kind in INVOICE_EVENTS:
        invoice = resource.get("invoice", resource)
        record = _invoice(_object(invoice, "resource.invoice"), "resource.invoice")
        # Checked above, then dropped: PayPal creates an invoice as a DRAFT and sends it in
        # a second call, and the creation's event carries the draft, newer than the open
        # invoice it was made from. Applied, it turned that invoice back into a draft in
        # every other system (the demo's Ascora then refused its payment). The processor
        # hydrates the invoice as it is when the event gets there.
        items = [WebhookItem(event_id, "invoice", record.external_id, "upsert", occurred_at)]
        recipient = recipient_of(_object(invoice, "resource.invoice"))
        if recipient is not None and customer_id(recipient) is not None:
            # The recipient is the customer as PayPal holds it: synced with its invoice.
            customer = _customer(
                {**recipient, "update_time": paypal_time(record.updated_at)},
                "resource.invoice.primary_recipients.0.billing_info",
            )
            items.insert(
                0,
                WebhookItem(
                    f"{event_id}:customer",
                    "customer",
                    customer.external_id,
                    "upsert",
                    occurred_at,
                    customer,
                ),
            )
        # Payments recorded on the invoice have no events of their own at PayPal: they
        # arrive with the invoice that lists them (their removal only by reconciliation).
        for transaction in (invoice.get("payments") or {}).get("transactions") or []:
            if isinstance(transaction, Mapping) and transaction.get("type") == "EXTERNAL":
                payment = _recorded(
                    {
                        "invoice_id": record.external_id,
                        "update_time": paypal_time(record.updated_at),
                        "transaction": transaction,
                    },
                    "resource.invoice.payments.transactions",
                )
                items.append(
                    WebhookItem(
                        f"{event_id}:{payment.external_id}",
                        "payment",
                        payment.external_id,
                        "upsert",
                        occurred_at,
                        payment,
                    )
                )
        return WebhookParse(items=tuple(items))
    if kind in CAPTURE_EVENTS:
        capture_id = resource.get("id")
        if not isinstance(capture_id, str) or not capture_id:
            raise MappingError("schema_violation", "resource.id: missing")
        # Thin: the client finds the invoice whose transactions name the capture.
        item = WebhookItem(event_id, "payment", capture_id, "upsert", occurred_at)
        return WebhookParse(items=(item,))
    if kind in REFUND_EVENTS:
        capture_id = _up_capture(resource)
        if capture_id is None:
            raise MappingError("schema_violation", "resource.links: no capture the refund is of")
        # A refund is read as the capture it refunds (fetched: its status says how much).
        return WebhookParse(
            items=(WebhookItem(event_id, "payment", capture_id, "upsert", occurred_at),)
        )
    return WebhookParse(items=(), ignored=1)


@with_field_overrides
class Mapper(KindMapper):
    """PayPal's RecordMapper; reads no settings."""

    kinds: ClassVar[Mapping[EntityType, Kind]] = settings_free(
        customer=(_customer, "customer", customer_body),
        invoice=(_invoice, "invoice", invoice_body),
        payment=(_payment, "payment", payment_body),
    )
    unsupported = "PayPal has no such records"

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        return parse_event(json_body_object(body, "an event"))
