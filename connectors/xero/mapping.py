"""Xero accounting objects <-> canonical records, and Xero's thin webhooks -> items.

Pure functions of their inputs. Money goes through Decimal both ways: Xero states amounts
as decimal numbers in the invoice's currency, canonical records as integer minor units,
so every conversion needs the currency's ISO 4217 exponent (JPY 0, USD 2, KWD 3).

Xero's JSON has two date spellings: the WCF form ``/Date(1573755038314+0000)/`` (epoch
milliseconds, UTC; the offset only says how Xero would display it) for UpdatedDateUTC and
for Date/DueDate, and ISO 8601 without a zone (``2019-11-14T00:00:00``) for DateString,
DueDateString and in request bodies. Both are read here; writes use ``YYYY-MM-DD``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from pydantic import ValidationError

from connectors.kinds import Kind, KindMapper
from connectors.money import decimal_of, minor_unit_digits
from connectors.overrides import with_field_overrides
from connectors.spec import (
    EntityType,
    MappingError,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
    canonical_data,
    json_body,
)

# A string field, None when absent or blank: Xero writes "" for cleared fields.
from connectors.spec import optional_text as _text
from schemas.records import ENTITY_MODELS, Customer, Invoice, Payment, line_amount

# Webhook categories we sync and the entity each one announces. Xero also sends
# SUBSCRIPTION (app store), CREDITNOTE and PREPAYMENT events: counted as ignored.
CATEGORY_ENTITIES: dict[str, EntityType] = {"CONTACT": "customer", "INVOICE": "invoice"}
# Xero's eventType values (the docs' own examples spell them "Update" as well as "UPDATE").
EVENT_TYPES = frozenset({"CREATE", "UPDATE"})

# A JSON double carries 15 significant decimal digits exactly (IEEE 754 binary64).
_EXACT_DOUBLE_DIGITS = 15

# Xero's contact and invoice states (developer.xero.com/documentation/api/accounting/types).
CONTACT_GONE = frozenset({"ARCHIVED", "GDPRREQUEST"})
INVOICE_STATUS_IN: dict[str, str] = {
    "DRAFT": "draft",
    "SUBMITTED": "draft",  # awaiting approval: not yet sent to the customer
    "AUTHORISED": "open",
    "PAID": "paid",
    "VOIDED": "void",
    "DELETED": "void",
}
# Xero sets PAID itself once payments cover the total, and has no "overdue" state: both
# are pushed as AUTHORISED (an approved, sendable invoice).
INVOICE_STATUS_OUT: dict[str, str] = {
    "draft": "DRAFT",
    "open": "AUTHORISED",
    "overdue": "AUTHORISED",
    "paid": "AUTHORISED",
    "void": "VOIDED",
}
# Xero's default chart of accounts: 200 is "Sales". A connection may name its own.
DEFAULT_SALES_ACCOUNT_CODE = "200"

_WCF_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


# --- values ------------------------------------------------------------------------------


def to_minor(value: object, currency: str, path: str) -> int:
    """Xero's decimal amount in ``currency`` as integer minor units, or MappingError."""
    scaled = decimal_of(value, path).scaleb(minor_unit_digits(currency))
    if scaled != scaled.to_integral_value():
        raise MappingError(
            "schema_violation",
            f"{path}: {value} has more decimal places than {currency} has minor units",
        )
    return int(scaled)


def json_number(value: Decimal, path: str) -> int | float:
    """``value`` as a JSON number that prints as exactly ``value``.

    Request bodies go through the standard ``json`` encoder, which has no Decimal: an int
    when whole, else the float whose shortest repr is the same decimal (always true up to
    15 significant digits); anything longer would be rounded on the wire, so it fails.
    """
    if value == value.to_integral_value():
        return int(value)
    as_float = float(value)
    if len(value.as_tuple().digits) > _EXACT_DOUBLE_DIGITS or Decimal(repr(as_float)) != value:
        raise MappingError("schema_violation", f"{path}: {value} cannot be sent exactly")
    return as_float


def from_minor(amount: int, currency: str, path: str) -> int | float:
    """Integer minor units as the decimal JSON number Xero takes."""
    return json_number(Decimal(amount).scaleb(-minor_unit_digits(currency)), path)


def parse_datetime(value: object, path: str) -> datetime:
    """A Xero timestamp (``/Date(ms+zzzz)/`` or ISO 8601, zone-less meaning UTC), aware UTC."""
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected a date string")
    match = _WCF_DATE.match(value.strip())
    if match:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not a Xero date") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_date(value: object, path: str) -> date:
    """A Xero calendar date (``/Date(ms)/`` at UTC midnight, or ``2019-11-14T00:00:00``)."""
    return parse_datetime(value, path).date()


def wcf_datetime(value: datetime) -> str:
    """``value`` the way Xero's JSON writes UpdatedDateUTC: ``/Date(1573755038314+0000)/``."""
    millis = (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    return f"/Date({millis}+0000)/"


def wcf_date(value: date) -> str:
    return wcf_datetime(datetime.combine(value, time(), tzinfo=UTC))


def iso_date_string(value: date) -> str:
    """Xero's DateString form: ``2019-11-14T00:00:00``."""
    return f"{value.isoformat()}T00:00:00"


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MappingError("schema_violation", f"{path}: expected an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise MappingError("schema_violation", f"{path}: expected an array")
    return value


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field(obj: Mapping[str, Any], key: str, path: str = "") -> Any:
    """``obj[key]`` or MappingError naming ``path.key`` (``path`` is where ``obj`` sits)."""
    if obj.get(key) is None:
        raise MappingError("schema_violation", f"{_at(path, key)}: missing")
    return obj[key]


def _id(obj: Mapping[str, Any], key: str, path: str = "") -> str:
    value = _field(obj, key, path)
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", f"{_at(path, key)}: expected a non-empty id")
    return value


def _parse_canonical(entity_type: EntityType, data: Mapping[str, Any]) -> Any:
    try:
        return ENTITY_MODELS[entity_type].model_validate(dict(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MappingError("schema_violation", f"data.{where}: {first['msg']}") from None


# --- webhooks ----------------------------------------------------------------------------


def _tenant(settings: Mapping[str, Any]) -> str:
    tenant = settings.get("xero_tenant_id")
    if not isinstance(tenant, str) or not tenant:
        raise MappingError("tenant_mismatch", "settings.xero_tenant_id: the connection has none")
    return tenant


def event_id(category: str, resource_id: str, event_type: str, occurred_at: datetime) -> str:
    """The dedup key of one Xero event.

    Xero gives events no id of their own. The sequence numbers number a payload, not an
    event, and a retried delivery may batch differently; what stays the same across
    redeliveries is the event itself: which resource, what happened, when (to the
    millisecond). Two changes to one resource in the same millisecond share a key, which
    loses nothing: a thin event is hydrated with the record as it is now.
    """
    stamp = occurred_at.isoformat(timespec="milliseconds")
    return f"{category}:{resource_id}:{event_type}:{stamp}"


def _parse_event(index: int, event: object, tenant: str) -> tuple[WebhookItem | None, bool]:
    path = f"events.{index}"
    obj = _object(event, path)
    category = _field(obj, "eventCategory", path)
    if not isinstance(category, str):
        raise MappingError("schema_violation", f"{path}.eventCategory: expected a string")
    entity_type = CATEGORY_ENTITIES.get(category.upper())
    if entity_type is None:
        return None, True
    tenant_id = _field(obj, "tenantId", path)
    if tenant_id != tenant:
        raise MappingError(
            "tenant_mismatch", f"{path}.tenantId: {tenant_id!r} is not this connection's tenant"
        )
    event_type = _field(obj, "eventType", path)
    if not isinstance(event_type, str) or event_type.upper() not in EVENT_TYPES:
        raise MappingError("unknown_event_type", f"{path}.eventType: {event_type!r}")
    resource_id = _id(obj, "resourceId", path)
    occurred_at = parse_datetime(_field(obj, "eventDateUtc", path), f"{path}.eventDateUtc")
    item = WebhookItem(
        event_id=event_id(category.upper(), resource_id, event_type.upper(), occurred_at),
        entity_type=entity_type,
        external_id=resource_id,
        op="upsert",
        occurred_at=occurred_at,
    )
    return item, False


# --- customers ---------------------------------------------------------------------------


def _phone_text(phone: Mapping[str, Any], path: str) -> str | None:
    parts = [
        _text(phone, key, path) for key in ("PhoneCountryCode", "PhoneAreaCode", "PhoneNumber")
    ]
    joined = " ".join(part for part in parts if part)
    return joined or None


def _contact_phone(contact: Mapping[str, Any]) -> str | None:
    phones = _list(contact.get("Phones") or [], "Phones")
    by_type: dict[str, str] = {}
    for index, raw in enumerate(phones):
        phone = _object(raw, f"Phones.{index}")
        text = _phone_text(phone, f"Phones.{index}")
        kind = phone.get("PhoneType")
        if text and isinstance(kind, str):
            by_type.setdefault(kind.upper(), text)
    return by_type.get("DEFAULT") or by_type.get("MOBILE")


def _contact_address(contact: Mapping[str, Any]) -> dict[str, Any] | None:
    addresses = _list(contact.get("Addresses") or [], "Addresses")
    by_type: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(addresses):
        path = f"Addresses.{index}"
        address = _object(raw, path)
        extra = [_text(address, f"AddressLine{n}", path) for n in (2, 3, 4)]
        line2 = ", ".join(part for part in extra if part) or None
        country = _text(address, "Country", path)
        fields = {
            "line1": _text(address, "AddressLine1", path),
            "line2": line2,
            "city": _text(address, "City", path),
            "region": _text(address, "Region", path),
            "postal_code": _text(address, "PostalCode", path),
            # Xero's Country is free text ("New Zealand"); only a two-letter code is one.
            "country": country if country and re.fullmatch(r"[A-Z]{2}", country) else None,
        }
        kind = address.get("AddressType")
        if any(fields.values()) and isinstance(kind, str):
            by_type.setdefault(kind.upper(), {k: v for k, v in fields.items() if v})
    return by_type.get("STREET") or by_type.get("POBOX")


def _contact_to_canonical(contact: Mapping[str, Any]) -> RemoteRecord:
    contact_id = _id(contact, "ContactID")
    updated_at = parse_datetime(_field(contact, "UpdatedDateUTC"), "UpdatedDateUTC")
    name = _text(contact, "Name", "Contact")
    person = " ".join(
        part
        for part in (_text(contact, "FirstName", "Contact"), _text(contact, "LastName", "Contact"))
        if part
    )
    raw: dict[str, Any] = {
        "email": _text(contact, "EmailAddress", "Contact"),
        "phone": _contact_phone(contact),
        "address": _contact_address(contact),
    }
    if person:
        # A named person at an organisation: Name is the organisation unless it merely
        # repeats the person's name.
        raw["name"] = person
        raw["company"] = name if name and name != person else None
    else:
        raw["name"] = name
    status = contact.get("ContactStatus")
    return RemoteRecord(
        entity_type="customer",
        external_id=contact_id,
        updated_at=updated_at,
        data=canonical_data("customer", raw),
        deleted=isinstance(status, str) and status.upper() in CONTACT_GONE,
    )


def _contact_from_canonical(customer: Customer) -> dict[str, Any]:
    sent = customer.model_fields_set
    body: dict[str, Any] = {}
    if "name" in sent or "company" in sent:
        title = customer.company or customer.name
        if title:
            body["Name"] = title
    if "name" in sent and customer.name:
        first, _, last = customer.name.partition(" ")
        if first and last:
            body["FirstName"], body["LastName"] = first, last
        else:
            body["FirstName"], body["LastName"] = customer.name, ""
    if "email" in sent:
        body["EmailAddress"] = customer.email or ""
    if "phone" in sent:
        body["Phones"] = [{"PhoneType": "DEFAULT", "PhoneNumber": customer.phone or ""}]
    if "address" in sent:
        address = customer.address
        body["Addresses"] = [
            {
                "AddressType": "STREET",
                "AddressLine1": (address and address.line1) or "",
                "AddressLine2": (address and address.line2) or "",
                "City": (address and address.city) or "",
                "Region": (address and address.region) or "",
                "PostalCode": (address and address.postal_code) or "",
                "Country": (address and address.country) or "",
            }
        ]
    return body


# --- invoices ----------------------------------------------------------------------------


def _invoice_date(invoice: Mapping[str, Any], key: str) -> date | None:
    """``DateString`` when present (Xero's unambiguous form), else ``Date``."""
    for field in (f"{key}String", key):
        value = invoice.get(field)
        if value:
            return parse_date(value, field)
    return None


def _line_to_canonical(
    raw: object, index: int, currency: str, amount_types: object = "Exclusive"
) -> dict[str, Any]:
    """One line, tax-exclusive: canonical ``quantity * unit_amount`` is before tax.

    ``LineAmountTypes`` says how Xero reads the line: ``Exclusive`` (tax on top), ``Inclusive``
    (``UnitAmount`` and ``LineAmount`` hold the tax; Xero's SubTotal is the LineAmounts less tax) or
    ``NoTax`` (a TaxAmount there is ignored: TotalTax is 0).
    """
    path = f"LineItems.{index}"
    line = _object(raw, path)
    quantity = decimal_of(line.get("Quantity", 1), f"{path}.Quantity")
    unit = to_minor(line.get("UnitAmount", 0), currency, f"{path}.UnitAmount")
    # Xero pads quantities to its 4 places ("1.0000"); one spelling per value keeps record
    # hashes stable across reads.
    quantity = quantity.normalize()
    if quantity < 0:
        # A credit line may carry the sign on the quantity; canonical quantities are never
        # negative, so the sign moves to the unit amount (same product).
        quantity, unit = -quantity, -unit
    tax = to_minor(line.get("TaxAmount", 0), currency, f"{path}.TaxAmount")
    if amount_types == "NoTax":
        tax = 0
    elif amount_types == "Inclusive" and tax:
        if line.get("LineAmount") is not None:
            gross = to_minor(line["LineAmount"], currency, f"{path}.LineAmount")
        else:
            gross = line_amount(quantity, unit)
        net = gross - tax
        per_unit = Decimal(net) / quantity if quantity else Decimal("NaN")
        if per_unit.is_finite() and per_unit == per_unit.to_integral_value():
            unit = int(per_unit)
        else:
            # The net amount does not divide into whole minor units per unit: one of it,
            # so the line still bills exactly what Xero's does.
            quantity, unit = Decimal(1), net
    result: dict[str, Any] = {"quantity": quantity, "unit_amount": unit, "tax_amount": tax}
    description = _text(line, "Description", path)
    if description is not None:
        result["description"] = description
    return result


def _invoice_to_canonical(invoice: Mapping[str, Any]) -> RemoteRecord:
    invoice_id = _id(invoice, "InvoiceID")
    kind = invoice.get("Type")
    if kind != "ACCREC":
        raise MappingError(
            "unsupported_entity", f"Invoice.Type: {kind!r} is not a sales invoice (ACCREC)"
        )
    updated_at = parse_datetime(_field(invoice, "UpdatedDateUTC"), "UpdatedDateUTC")
    currency = _field(invoice, "CurrencyCode")
    if not isinstance(currency, str):
        raise MappingError("schema_violation", "CurrencyCode: expected a string")
    status = _field(invoice, "Status")
    if status not in INVOICE_STATUS_IN:
        raise MappingError("schema_violation", f"Status: unknown invoice status {status!r}")
    raw: dict[str, Any] = {
        "number": _text(invoice, "InvoiceNumber", "Invoice"),
        "status": INVOICE_STATUS_IN[status],
        "currency": currency,
        "issued_on": _invoice_date(invoice, "Date"),
        "due_on": _invoice_date(invoice, "DueDate"),
    }
    if "LineItems" in invoice:
        lines = _list(invoice["LineItems"], "LineItems")
        types = invoice.get("LineAmountTypes") or "Exclusive"
        raw["lines"] = [
            _line_to_canonical(line, i, currency, types) for i, line in enumerate(lines)
        ]
    for source, target in (
        ("SubTotal", "subtotal"),
        ("TotalTax", "tax"),
        ("Total", "total"),
        ("AmountDue", "amount_due"),
    ):
        if invoice.get(source) is not None:
            raw[target] = to_minor(invoice[source], currency, source)
    refs: dict[str, str] = {}
    contact = invoice.get("Contact")
    if contact is not None:
        refs["customer_id"] = _id(_object(contact, "Contact"), "ContactID", "Contact")
    return RemoteRecord(
        entity_type="invoice",
        external_id=invoice_id,
        updated_at=updated_at,
        data=canonical_data("invoice", raw),
        refs=refs,
        deleted=status == "DELETED",
    )


def _currency_for(data: Mapping[str, Any], what: str) -> str:
    currency = data.get("currency")
    if not isinstance(currency, str):
        raise MappingError("schema_violation", f"data.currency: needed to send {what} to Xero")
    return currency


def _invoice_from_canonical(
    invoice: Invoice, refs: Mapping[str, str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    sent = invoice.model_fields_set
    body: dict[str, Any] = {"Type": "ACCREC"}
    if "customer_id" in refs:
        body["Contact"] = {"ContactID": refs["customer_id"]}
    if "number" in sent and invoice.number:
        body["InvoiceNumber"] = invoice.number
    if "status" in sent and invoice.status:
        body["Status"] = INVOICE_STATUS_OUT[invoice.status]
    if "currency" in sent and invoice.currency:
        body["CurrencyCode"] = invoice.currency
    if "issued_on" in sent and invoice.issued_on:
        body["Date"] = invoice.issued_on.isoformat()
    if "due_on" in sent and invoice.due_on:
        body["DueDate"] = invoice.due_on.isoformat()
    if "lines" in sent and invoice.lines is not None:
        currency = _currency_for({"currency": invoice.currency}, "line amounts")
        account = str(settings.get("xero_sales_account_code") or DEFAULT_SALES_ACCOUNT_CODE)
        body["LineAmountTypes"] = "Exclusive"
        body["LineItems"] = [
            {
                "Description": line.description or "",
                "Quantity": json_number(line.quantity, f"data.lines.{i}.quantity"),
                "UnitAmount": from_minor(line.unit_amount, currency, f"data.lines.{i}.unit"),
                "TaxAmount": from_minor(line.tax_amount, currency, f"data.lines.{i}.tax"),
                "AccountCode": account,
            }
            for i, line in enumerate(invoice.lines)
        ]
    return body


# --- payments ----------------------------------------------------------------------------


def _payment_currency(
    payment: Mapping[str, Any], invoice: Mapping[str, Any], settings: Mapping[str, Any]
) -> str:
    """The payment's currency: its invoice's, which Xero omits for base-currency invoices.

    Xero's own example of a payment on a base-currency invoice has no Invoice.CurrencyCode
    and a CurrencyRate of 1; the connection's ``xero_base_currency`` fills that gap. A
    foreign-currency payment without a code cannot be read exactly.
    """
    currency = invoice.get("CurrencyCode")
    if isinstance(currency, str) and currency:
        return currency
    base = settings.get("xero_base_currency")
    rate = decimal_of(payment.get("CurrencyRate", 1), "CurrencyRate")
    if isinstance(base, str) and base and rate == 1:
        return base
    raise MappingError(
        "schema_violation",
        "Invoice.CurrencyCode: missing, and the payment is not in a known base currency",
    )


def _payment_to_canonical(payment: Mapping[str, Any], settings: Mapping[str, Any]) -> RemoteRecord:
    payment_id = _id(payment, "PaymentID")
    kind = payment.get("PaymentType", "ACCRECPAYMENT")
    if kind != "ACCRECPAYMENT":
        raise MappingError(
            "unsupported_entity", f"PaymentType: {kind!r} is not a receivable payment"
        )
    updated_at = parse_datetime(_field(payment, "UpdatedDateUTC"), "UpdatedDateUTC")
    invoice = _object(_field(payment, "Invoice"), "Invoice")
    currency = _payment_currency(payment, invoice, settings)
    status = payment.get("Status")
    paid_on = payment.get("Date")
    raw: dict[str, Any] = {
        "amount": to_minor(_field(payment, "Amount"), currency, "Amount"),
        "currency": currency,
        "reference": _text(payment, "Reference", "Payment"),
        "paid_at": (
            datetime.combine(parse_date(paid_on, "Date"), time(), tzinfo=UTC) if paid_on else None
        ),
    }
    if status == "AUTHORISED":
        raw["status"] = "succeeded"
    refs = {"invoice_id": _id(invoice, "InvoiceID", "Invoice")}
    contact = invoice.get("Contact")
    if isinstance(contact, Mapping) and isinstance(contact.get("ContactID"), str):
        refs["customer_id"] = contact["ContactID"]
    return RemoteRecord(
        entity_type="payment",
        external_id=payment_id,
        updated_at=updated_at,
        data=canonical_data("payment", {k: v for k, v in raw.items() if v is not None}),
        refs=refs,
        deleted=status == "DELETED",
    )


def holds_back(entity_type: EntityType, data: Mapping[str, Any]) -> str | None:
    """Why Xero cannot hold this record yet (connectors.spec.ApiSpec.holds_back): its
    Payments API records money received, created AUTHORISED (or later DELETED), and has no
    pending, failed or refunded payment. A card payment still pending is held until it
    has succeeded. An approved invoice needs a line item (a draft may have none)."""
    status = data.get("status")
    if entity_type == "payment" and status not in (None, "succeeded"):
        return f"Xero records only received payments: a {status} payment waits until it succeeds"
    if entity_type == "invoice" and not data.get("lines") and status not in (None, "draft"):
        # "An invoice must have at least one line item" when it is approved.
        return "Xero approves no invoice without a line item: it waits until it has lines"
    return None


def _payment_from_canonical(
    payment: Payment, refs: Mapping[str, str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    sent = payment.model_fields_set
    if payment.status not in (None, "succeeded"):
        raise MappingError(
            "schema_violation",
            f"data.status: Xero records only received payments, not {payment.status!r} ones",
        )
    account = settings.get("xero_payment_account_code")
    if not isinstance(account, str) or not account:
        raise MappingError(
            "schema_violation",
            "settings.xero_payment_account_code: Xero needs the bank account a payment goes to",
        )
    invoice: dict[str, Any] = {}
    if "invoice_id" in refs:
        invoice["InvoiceID"] = refs["invoice_id"]
    if payment.currency:
        invoice["CurrencyCode"] = payment.currency
    body: dict[str, Any] = {"Invoice": invoice, "Account": {"Code": account}}
    if "amount" in sent and payment.amount is not None:
        currency = _currency_for({"currency": payment.currency}, "a payment amount")
        body["Amount"] = from_minor(payment.amount, currency, "data.amount")
    if "paid_at" in sent and payment.paid_at is not None:
        body["Date"] = payment.paid_at.astimezone(UTC).date().isoformat()
    if "reference" in sent and payment.reference:
        body["Reference"] = payment.reference
    return body


# --- the mapper --------------------------------------------------------------------------


@with_field_overrides
class Mapper(KindMapper):
    """connectors.spec.RecordMapper for Xero (contacts, ACCREC invoices, payments)."""

    kinds: ClassVar[Mapping[EntityType, Kind]] = {
        "customer": Kind(
            read=lambda obj, settings: _contact_to_canonical(obj),
            write=lambda data, refs, settings: _contact_from_canonical(
                _parse_canonical("customer", data)
            ),
        ),
        "invoice": Kind(
            read=lambda obj, settings: _invoice_to_canonical(obj),
            write=lambda data, refs, settings: _invoice_from_canonical(
                _parse_canonical("invoice", data), refs, settings
            ),
        ),
        "payment": Kind(
            read=_payment_to_canonical,
            write=lambda data, refs, settings: _payment_from_canonical(
                _parse_canonical("payment", data), refs, settings
            ),
        ),
    }
    unsupported = "Xero has no such records"

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        payload = json_body(body, "body: not a JSON document")
        events = _list(_field(_object(payload, "body"), "events"), "events")
        tenant = _tenant(settings)
        items: list[WebhookItem] = []
        ignored = 0
        for index, event in enumerate(events):
            item, skipped = _parse_event(index, event, tenant)
            if item is not None:
                items.append(item)
            ignored += skipped
        return WebhookParse(items=tuple(items), ignored=ignored)
