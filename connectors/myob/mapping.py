"""MYOB Business (AccountRight) API objects <-> canonical records. Pure; no I/O.

MYOB states money as decimal numbers in the company file's one currency (a company file
keeps its books in one currency; the connection names it, ``myob_currency``), so every
conversion goes through Decimal and the currency's ISO 4217 exponent. ``LastModified``
is written without an offset and read as UTC (README, assumptions).

Sale invoices are the ``Item`` layout: lines keep a quantity and a unit price, each line
names the item it sells (the connection's ``myob_item_uid``, a non-inventoried service
item) and a tax code. MYOB computes a line's tax from its code's rate, so a canonical
line is written with the taxed code only when that rate reproduces its tax exactly, with
the tax-free code when it carries none, and refused otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from connectors.kinds import Kind, KindMapper
from connectors.money import decimal_of, minor_unit_digits, percent_of
from connectors.overrides import with_field_overrides
from connectors.spec import (
    ClientSettings,
    EntityType,
    MappingError,
    RemoteRecord,
    WebhookParse,
    canonical_data,
    json_object,
)
from schemas.records import line_amount

# A company file's currency when the connection names none: MYOB's AccountRight and
# MYOB Business are sold in Australia (AUD) and New Zealand (NZD).
DEFAULT_CURRENCY = "AUD"
# Australian GST, the rate of the GST tax code of every Australian company file.
DEFAULT_TAX_RATE = Decimal(10)
# MYOB's sale invoice states: Open (a balance due), Closed (paid), Credit (overpaid, a
# credit owed to the customer). MYOB has no draft or void sale invoice: an unfinished
# sale is a Quote or an Order (other endpoints), a mistaken one is deleted or reversed.
INVOICE_STATUS_IN: dict[str, str] = {"Open": "open", "Closed": "paid", "Credit": "paid"}
# Contact addresses are numbered 1..5; address 1 is the card's main address.
MAIN_ADDRESS = 1
# ``Street`` is one free-text field of up to 255 characters; our two lines share it.
STREET_LINE_BREAK = "\n"


class MyobOptions(ClientSettings):
    """The settings MYOB's mapper and client read of a connection."""

    myob_company_file_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    myob_currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = DEFAULT_CURRENCY
    myob_api_key: str | None = None
    myob_item_uid: str | None = None
    myob_tax_code_uid: str | None = None
    myob_free_tax_code_uid: str | None = None
    myob_tax_rate: Annotated[Decimal, Field(ge=0, le=100)] = DEFAULT_TAX_RATE
    myob_deposit_account_uid: str | None = None
    myob_page_size: Annotated[int, Field(ge=1, le=1000)] = 400

    messages: ClassVar[dict[str, str]] = {
        "myob_company_file_id": "a MYOB connection needs settings['myob_company_file_id'] "
        "(the company file's id, as GET /accountright/ lists it)",
        "myob_currency": "myob_currency must be an ISO 4217 code, not {value}",
        "myob_page_size": "myob_page_size must be 1..1000 (MYOB's $top), not {value}",
    }


def options(settings: Mapping[str, Any]) -> MyobOptions:
    """The connection's MYOB settings; a bad one is a MappingError (a dead letter) here,
    the client raises ValueError for the same words when it is built."""
    try:
        return MyobOptions.parse(settings)
    except ValueError as exc:
        raise MappingError("schema_violation", f"settings: {exc}") from None


# --- values ---------------------------------------------------------------------------------


def to_minor(value: object, currency: str, path: str) -> int:
    """MYOB's decimal amount as integer minor units; more places than the currency has
    is a schema violation (never rounded silently)."""
    scaled = decimal_of(value, path).scaleb(minor_unit_digits(currency))
    if scaled != scaled.to_integral_value():
        raise MappingError(
            "schema_violation", f"{path}: {value} has more places than {currency} has"
        )
    return int(scaled)


def from_minor(amount: int, currency: str) -> float | int:
    """Minor units as the JSON number MYOB reads (exact: at most 15 significant digits)."""
    return _json_number(Decimal(amount).scaleb(-minor_unit_digits(currency)))


def _json_number(number: Decimal) -> float | int:
    # A JSON double holds 15 significant digits exactly: every amount and quantity here.
    return int(number) if number == number.to_integral_value() else float(number)


def myob_time(value: datetime) -> str:
    """A time as MYOB writes and filters it: UTC, no offset, whole seconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_time(value: object, path: str) -> datetime:
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected a date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not a date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # MYOB's LastModified is UTC without an offset
    return parsed.astimezone(UTC)


def parse_day(value: object, path: str) -> date:
    return parse_time(value, path).date()


def _text(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}.{key}: expected a string")
    return value.strip() or None


def _uid(obj: Mapping[str, Any], path: str) -> str:
    value = obj.get("UID")
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", f"{path}.UID: expected the record's UID")
    return value


def _ref_uid(obj: Mapping[str, Any], key: str) -> str | None:
    ref = obj.get(key)
    if isinstance(ref, Mapping) and isinstance(ref.get("UID"), str) and ref["UID"]:
        return str(ref["UID"])
    return None


def _row_version(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("RowVersion")
    return value if isinstance(value, str) and value else None


def _record(
    entity_type: EntityType,
    obj: Mapping[str, Any],
    raw: dict[str, Any],
    path: str,
    *,
    refs: dict[str, str] | None = None,
    deleted: bool = False,
) -> RemoteRecord:
    """A MYOB object as read: its UID, LastModified and RowVersion, ``raw`` (the canonical
    fields read from it) validated as the entity type's record."""
    return RemoteRecord(
        entity_type=entity_type,
        external_id=_uid(obj, path),
        updated_at=parse_time(obj.get("LastModified"), f"{path}.LastModified"),
        data=canonical_data(entity_type, raw, f"{path}: "),
        refs=refs if refs is not None else {},
        deleted=deleted,
        version=_row_version(obj),
    )


def _currency_of(data: Mapping[str, Any], opts: MyobOptions, what: str) -> str:
    currency = data.get("currency") or opts.myob_currency
    if currency != opts.myob_currency:
        raise MappingError(
            "schema_violation",
            f"currency: the MYOB company file keeps its books in {opts.myob_currency}; "
            f"a {what} in {currency} cannot be written to it",
        )
    return str(currency)


# --- customers (Contact/Customer) -------------------------------------------------------------


def _main_address(contact: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    addresses = contact.get("Addresses")
    if addresses is None:
        return {}
    if not isinstance(addresses, list):
        raise MappingError("schema_violation", f"{path}.Addresses: expected a list")
    for address in addresses:
        if isinstance(address, Mapping) and address.get("Location") == MAIN_ADDRESS:
            return address
    return {}


def customer_to_canonical(contact: Mapping[str, Any], path: str = "customer") -> RemoteRecord:
    company = None
    if contact.get("IsIndividual"):
        names = [_text(contact, "FirstName", path), _text(contact, "LastName", path)]
        name = " ".join(n for n in names if n) or None
    else:
        name = company = _text(contact, "CompanyName", path)
    address = _main_address(contact, path)
    where = f"{path}.Addresses.{MAIN_ADDRESS}"
    street = _text(address, "Street", where) or ""
    line1, _, line2 = street.partition(STREET_LINE_BREAK)
    country = _text(address, "Country", where)
    postal = {
        "line1": line1.strip() or None,
        "line2": line2.strip() or None,
        "city": _text(address, "City", where),
        "region": _text(address, "State", where),
        "postal_code": _text(address, "PostCode", where),
        # MYOB's country is free text ("Australia"); only a two-letter code is kept.
        "country": country if country and len(country) == 2 and country.isupper() else None,
    }
    raw: dict[str, Any] = {
        "name": name,
        "email": _text(address, "Email", where),
        "phone": _text(address, "Phone1", where),
        "notes": _text(contact, "Notes", path),
        "address": postal if any(postal.values()) else None,
    }
    if not contact.get("IsIndividual"):
        # An individual's card has no company: leave what another system holds of it.
        raw["company"] = company
    # MYOB's inactive cards are hidden, not gone: a deleted customer is a 404.
    return _record("customer", contact, raw, path, deleted=contact.get("IsActive") is False)


def split_name(name: str) -> tuple[str, str]:
    """(FirstName, LastName) of a one-field name: the last word is the last name."""
    words = name.split()
    if len(words) <= 1:
        return "", name.strip()
    return " ".join(words[:-1]), words[-1]


def customer_body(data: Mapping[str, Any]) -> dict[str, Any]:
    """A Contact/Customer's fields from canonical ``data``. A customer with a name is an
    individual's card; one with only a company, a company's card (README, assumptions).
    The main address (Location 1) carries email, phone and the postal address."""
    body: dict[str, Any] = {"IsActive": True}
    if data.get("name"):
        first, last = split_name(str(data["name"]))
        body.update(IsIndividual=True, FirstName=first, LastName=last, CompanyName=None)
    elif data.get("company"):
        body.update(IsIndividual=False, CompanyName=data["company"], FirstName=None, LastName=None)
    if "notes" in data:
        body["Notes"] = data["notes"] or ""
    address: dict[str, Any] = {}
    if "email" in data:
        address["Email"] = data["email"] or ""
    if "phone" in data:
        address["Phone1"] = data["phone"] or ""
    if "address" in data:
        postal = data["address"] or {}
        lines = [postal.get("line1") or "", postal.get("line2") or ""]
        address.update(
            Street=STREET_LINE_BREAK.join(line for line in lines if line),
            City=postal.get("city") or "",
            State=postal.get("region") or "",
            PostCode=postal.get("postal_code") or "",
            Country=postal.get("country") or "",
        )
    if address:
        body["Addresses"] = [{"Location": MAIN_ADDRESS, **address}]
    return body


# --- sale invoices (Sale/Invoice/Item) --------------------------------------------------------


def _line_tax(amount: int, taxed: bool, rate: Decimal) -> int:
    return percent_of(amount, rate) if taxed else 0


def _line_to_canonical(
    line: Mapping[str, Any],
    currency: str,
    tax_inclusive: bool,
    opts: MyobOptions,
    path: str,
) -> dict[str, Any]:
    try:
        quantity = Decimal(str(line.get("ShipQuantity", 1)))
    except InvalidOperation:
        raise MappingError("schema_violation", f"{path}.ShipQuantity: not a number") from None
    if not quantity.is_finite() or quantity <= 0:
        raise MappingError("schema_violation", f"{path}.ShipQuantity: must be positive")
    total = to_minor(line.get("Total", 0), currency, f"{path}.Total")
    taxed = opts.myob_tax_code_uid is not None and _ref_uid(line, "TaxCode") == (
        opts.myob_tax_code_uid
    )
    if tax_inclusive:
        # A tax-inclusive line's Total holds its tax: the part ex tax is Total/(1+rate).
        rate = opts.myob_tax_rate if taxed else Decimal(0)
        ex_tax = (Decimal(total) * 100 / (100 + rate)).quantize(Decimal(1), ROUND_HALF_UP)
        amount, tax = int(ex_tax), total - int(ex_tax)
    else:
        amount, tax = total, _line_tax(total, taxed, opts.myob_tax_rate)
    unit = (Decimal(amount) / quantity).quantize(Decimal(1), ROUND_HALF_UP)
    if line_amount(quantity, int(unit)) != amount:
        # A total that is not quantity x a whole unit price: kept exact as one unit.
        quantity, unit = Decimal(1), Decimal(amount)
    return {
        "description": _text(line, "Description", path),
        "quantity": format(quantity.normalize(), "f"),
        "unit_amount": int(unit),
        "tax_amount": tax,
    }


def invoice_to_canonical(
    invoice: Mapping[str, Any], opts: MyobOptions, path: str = "invoice"
) -> RemoteRecord:
    status = invoice.get("Status")
    if status not in INVOICE_STATUS_IN:
        raise MappingError("schema_violation", f"{path}.Status: {status!r} is not MYOB's")
    currency = opts.myob_currency
    tax_inclusive = bool(invoice.get("IsTaxInclusive"))
    lines = invoice.get("Lines") or []
    if not isinstance(lines, list):
        raise MappingError("schema_violation", f"{path}.Lines: expected a list")
    canonical_lines = [
        _line_to_canonical(json_object(line, f"{path}.Lines.{i}"), currency, tax_inclusive, opts,
                           f"{path}.Lines.{i}")
        for i, line in enumerate(lines)
        if isinstance(line, Mapping) and line.get("Type", "Transaction") == "Transaction"
    ]  # fmt: skip
    total = to_minor(invoice.get("TotalAmount", 0), currency, f"{path}.TotalAmount")
    tax = to_minor(invoice.get("TotalTax", 0), currency, f"{path}.TotalTax")
    due = to_minor(invoice.get("BalanceDueAmount", 0), currency, f"{path}.BalanceDueAmount")
    terms = invoice.get("Terms")
    due_on = None
    if isinstance(terms, Mapping) and terms.get("DueDate"):
        due_on = parse_day(terms["DueDate"], f"{path}.Terms.DueDate").isoformat()
    raw: dict[str, Any] = {
        "number": _text(invoice, "Number", path),
        "status": INVOICE_STATUS_IN[status],
        "currency": currency,
        "issued_on": parse_day(invoice.get("Date"), f"{path}.Date").isoformat(),
        "due_on": due_on,
        "lines": canonical_lines,
        "subtotal": total - tax,
        "tax": tax,
        "total": total,
        "amount_due": max(0, due),
    }
    refs = {}
    customer = _ref_uid(invoice, "Customer")
    if customer is not None:
        refs["customer_id"] = customer
    return _record("invoice", invoice, raw, path, refs=refs)


def _line_body(line: Mapping[str, Any], opts: MyobOptions, index: int) -> dict[str, Any]:
    where = f"lines.{index}"
    quantity = Decimal(str(line.get("quantity", "1")))
    unit = int(line.get("unit_amount", 0))
    amount = line_amount(quantity, unit)
    tax = int(line.get("tax_amount") or 0)
    if tax == 0:
        code = opts.myob_free_tax_code_uid
        setting = "myob_free_tax_code_uid"
    elif tax == percent_of(amount, opts.myob_tax_rate):
        code = opts.myob_tax_code_uid
        setting = "myob_tax_code_uid"
    else:
        raise MappingError(
            "schema_violation",
            f"{where}.tax_amount: MYOB computes a line's tax from its tax code "
            f"({opts.myob_tax_rate}% of {amount} is {percent_of(amount, opts.myob_tax_rate)}), "
            f"not {tax}",
        )
    if code is None:
        raise MappingError("schema_violation", f"settings: {setting} is needed to write lines")
    if opts.myob_item_uid is None:
        raise MappingError("schema_violation", "settings: myob_item_uid is needed to write lines")
    return {
        "Type": "Transaction",
        "Description": line.get("description") or "",
        "ShipQuantity": _json_number(quantity),
        "UnitPrice": from_minor(unit, opts.myob_currency),
        "Total": from_minor(amount, opts.myob_currency),
        "Item": {"UID": opts.myob_item_uid},
        "TaxCode": {"UID": code},
    }


def invoice_body(
    data: Mapping[str, Any], refs: Mapping[str, str], opts: MyobOptions
) -> dict[str, Any]:
    """A Sale/Invoice/Item's fields from canonical ``data``. Amounts are written ex tax
    (``IsTaxInclusive: false``); MYOB computes the totals and the status."""
    body: dict[str, Any] = {}
    if "currency" in data or data.get("lines") is not None:
        _currency_of(data, opts, "invoice")
    if "number" in data:
        body["Number"] = data["number"]
    if data.get("issued_on"):
        body["Date"] = f"{data['issued_on']}T00:00:00"
    if data.get("due_on") and data.get("issued_on"):
        # MYOB keeps terms, not a due date: the days from the issue date to it.
        issued = date.fromisoformat(str(data["issued_on"]))
        days = max(0, (date.fromisoformat(str(data["due_on"])) - issued).days)
        body["Terms"] = {"PaymentIsDue": "InAGivenNumberOfDays", "BalanceDueDate": days}
    if "customer_id" in refs:
        body["Customer"] = {"UID": refs["customer_id"]}
    if data.get("lines") is not None:
        body["IsTaxInclusive"] = False
        body["Lines"] = [_line_body(line, opts, i) for i, line in enumerate(data["lines"])]
    return body


# --- customer payments (Sale/CustomerPayment) -------------------------------------------------


def payment_to_canonical(
    payment: Mapping[str, Any], opts: MyobOptions, path: str = "payment"
) -> RemoteRecord:
    currency = opts.myob_currency
    invoices = payment.get("Invoices") or []
    if not isinstance(invoices, list):
        raise MappingError("schema_violation", f"{path}.Invoices: expected a list")
    applied = [
        i for i in invoices if isinstance(i, Mapping) and i.get("Type", "Invoice") == "Invoice"
    ]
    raw: dict[str, Any] = {
        "amount": to_minor(payment.get("AmountReceived"), currency, f"{path}.AmountReceived"),
        "currency": currency,
        # MYOB records money received: a customer payment exists only once it came in.
        "status": "succeeded",
        "method": (_text(payment, "PaymentMethod", path) or "").lower() or None,
        "reference": _text(payment, "Memo", path),
        "paid_at": datetime.combine(
            parse_day(payment.get("Date"), f"{path}.Date"), datetime.min.time(), UTC
        ).isoformat(),
    }
    refs = {}
    if applied and isinstance(applied[0].get("UID"), str):
        refs["invoice_id"] = str(applied[0]["UID"])
    customer = _ref_uid(payment, "Customer")
    if customer is not None:
        refs["customer_id"] = customer
    return _record("payment", payment, raw, path, refs=refs)


def payment_body(
    data: Mapping[str, Any], refs: Mapping[str, str], opts: MyobOptions
) -> dict[str, Any]:
    """A Sale/CustomerPayment applying the whole amount to the invoice it pays."""
    if "status" in data and data["status"] != "succeeded":
        raise MappingError(
            "schema_violation",
            f"status: MYOB records money received only, not a {data['status']!r} payment",
        )
    currency = _currency_of(data, opts, "payment")
    amount = data.get("amount")
    if not isinstance(amount, int):
        raise MappingError("schema_violation", "amount: a MYOB payment needs its amount")
    body: dict[str, Any] = {"AmountReceived": from_minor(amount, currency)}
    if opts.myob_deposit_account_uid:
        body.update(DepositTo="Account", Account={"UID": opts.myob_deposit_account_uid})
    else:
        body["DepositTo"] = "UndepositedFunds"
    if data.get("paid_at"):
        body["Date"] = myob_time(datetime.fromisoformat(str(data["paid_at"])))
    if "reference" in data:
        body["Memo"] = data["reference"] or ""
    if data.get("method"):
        body["PaymentMethod"] = str(data["method"]).replace("_", " ").title()
    if "customer_id" in refs:
        body["Customer"] = {"UID": refs["customer_id"]}
    if "invoice_id" in refs:
        body["Invoices"] = [
            {
                "UID": refs["invoice_id"],
                "AmountApplied": from_minor(amount, currency),
                "Type": "Invoice",
            }
        ]
    return body


# --- the mapper -------------------------------------------------------------------------------


@with_field_overrides
class Mapper(KindMapper):
    """MYOB's RecordMapper. MYOB sends no webhooks: parse_webhook is never reached
    through ingest (it refuses the provider) and refuses a body all the same."""

    kinds: ClassVar[Mapping[EntityType, Kind]] = {
        "customer": Kind(
            read=lambda obj, settings: customer_to_canonical(obj),
            write=lambda data, refs, settings: customer_body(data),
        ),
        "invoice": Kind(
            read=lambda obj, settings: invoice_to_canonical(obj, options(settings)),
            write=lambda data, refs, settings: invoice_body(data, refs, options(settings)),
        ),
        "payment": Kind(
            read=lambda obj, settings: payment_to_canonical(obj, options(settings)),
            write=lambda data, refs, settings: payment_body(data, refs, options(settings)),
        ),
    }
    unsupported = "MYOB has no such records here"

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        raise MappingError("unknown_event_type", "MYOB sends no webhooks; changes are polled")
