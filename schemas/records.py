"""Canonical records: what connectors map provider data into, what the processor stores and
what the outbound pushes out.

Money is exact (invariant 9): amounts are ``int`` minor units in strict mode, so a float,
a bool or a numeric string is rejected rather than coerced, and the record's ISO 4217
currency code says what they count. Fractional quantities are ``Decimal``, rejected as
floats and written to JSON as fixed-point strings.

Partial updates: every field a provider may leave out is optional. Whether a field was
sent is read from ``model_fields_set`` (``model_dump(exclude_unset=True)``), never from its
value, so an explicit ``None`` means "cleared" and an absent field means "unchanged".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    JsonValue,
    PlainSerializer,
    Strict,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from schemas.base import AwareDatetime, Event, FrozenModel
from schemas.changes import EntityType

# ISO 4217 List One (current currencies and funds), taken from Debian's iso-codes 4.15.0
# (/usr/share/iso-codes/json/iso_4217.json) and brought up to date with the maintenance
# agency's later amendments: ZWG added (2024), XCG added (2025); HRK, ZWL, ANG and BGN
# moved to the withdrawn set below. Includes funds (BOV, CHE, …), precious metals and the
# X-codes, because List One does.
_LIST_ONE = (
    "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF "
    "DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG "
    "HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK "
    "LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR "
    "SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP "
    "TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU "
    "XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG"
)
ISO_4217_ACTIVE: frozenset[str] = frozenset(_LIST_ONE.split())

# Withdrawn in the last few years (HRK 2023, ZWL 2024, ANG 2025, BGN 2026) but still on
# invoices and payments that providers hold, which must keep syncing.
ISO_4217_RECENTLY_WITHDRAWN: frozenset[str] = frozenset({"ANG", "BGN", "HRK", "ZWL"})

# "XXX" is ISO's code for "no currency involved": never right next to an amount.
ACCEPTED_CURRENCIES: frozenset[str] = (ISO_4217_ACTIVE | ISO_4217_RECENTLY_WITHDRAWN) - {"XXX"}

# Largest signed 64-bit integer: what Postgres bigint, a Java long or a Go int64 holds,
# so any consumer of records.changed can decode an amount without loss.
MAX_MINOR_UNITS = 2**63 - 1

# Sanity bounds, not provider limits: each connector fits values to its provider's own
# limits on the way out.
MAX_SHORT_TEXT = 255
MAX_LONG_TEXT = 20_000

# Quantities: far more precision than any provider keeps (Xero, for one, keeps 4 places).
MAX_QUANTITY_DIGITS = 24
MAX_QUANTITY_PLACES = 10

# RFC 5321: a path is at most 256 octets including the angle brackets, so 254 for the
# address; the local part at most 64.
MAX_EMAIL_LENGTH = 254
MAX_EMAIL_LOCAL_PART = 64
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def _known_currency(code: str) -> str:
    if code not in ACCEPTED_CURRENCIES:
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


Currency = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    AfterValidator(_known_currency),
    Field(description="ISO 4217 alphabetic code, upper case."),
]

# Amounts a provider states as totals or payments: never negative. A document whose total
# is negative is a credit note, which is not a canonical entity (yet); a refund is a
# Payment with status "refunded" and a positive amount.
MinorUnits = Annotated[
    int,
    Strict(),
    Field(ge=0, le=MAX_MINOR_UNITS, description="Integer minor units (cents)."),
]

# Line amounts may be negative: discount and credit lines are how Xero, QuickBooks and
# Stripe express them on an invoice.
SignedMinorUnits = Annotated[
    int,
    Strict(),
    Field(
        ge=-MAX_MINOR_UNITS,
        le=MAX_MINOR_UNITS,
        description="Integer minor units (cents); negative for a discount or credit.",
    ),
]


def _reject_float(value: object) -> object:
    # bool is an int subclass and float is inexact: neither is a quantity. A JSON number
    # with a fraction reaches here as a float too, so JSON must carry it as a string.
    if isinstance(value, float | bool):
        raise ValueError("quantity must be a decimal string or an integer, not a float or bool")
    return value


def _fixed_point(value: Decimal) -> str:
    # str() would write 1E-7 or 1E+2; fixed point reads the same in every language.
    # abs() only drops the sign of a negative zero: quantities are never below zero.
    return format(abs(value), "f")


Quantity = Annotated[
    Decimal,
    BeforeValidator(_reject_float),
    Field(ge=0, max_digits=MAX_QUANTITY_DIGITS, decimal_places=MAX_QUANTITY_PLACES),
    PlainSerializer(_fixed_point, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]+(\.[0-9]+)?$",
            "description": "Non-negative decimal number in fixed-point notation.",
        },
        mode="serialization",
    ),
]


def _email_shape(value: str) -> str:
    local, _, _ = value.partition("@")
    if not _EMAIL_SHAPE.fullmatch(value) or len(local) > MAX_EMAIL_LOCAL_PART:
        raise ValueError("email must look like name@example.com")
    return value


# Stripped and lower-cased whole, local part included: mail systems treat local parts
# case-insensitively in practice, and matching customers by email (invariant 6) needs one
# form.
# Only the shape is checked (one "@", a dotted domain, no spaces); deliverability is not.
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, max_length=MAX_EMAIL_LENGTH),
    AfterValidator(_email_shape),
]

ShortText = Annotated[str, StringConstraints(max_length=MAX_SHORT_TEXT)]
LongText = Annotated[str, StringConstraints(max_length=MAX_LONG_TEXT)]


def line_amount(quantity: Decimal, unit_amount: int) -> int:
    """``quantity * unit_amount`` in whole minor units, rounded half to even (banker's)."""
    with localcontext() as ctx:
        # 24 quantity digits times 19 amount digits fit with room to spare, so the product
        # is exact and the quantize below is the one and only rounding.
        ctx.prec = 64
        return int((quantity * unit_amount).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


class Address(FrozenModel):
    """A postal address. Country is only shape-checked: providers use user-assigned codes
    such as XK (Kosovo) that a fixed ISO 3166 list would reject."""

    line1: ShortText | None = None
    line2: ShortText | None = None
    city: ShortText | None = None
    region: ShortText | None = Field(None, description="State, province or county.")
    postal_code: Annotated[str, StringConstraints(max_length=32)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = Field(
        None, description="ISO 3166-1 alpha-2, upper case."
    )


class Customer(FrozenModel):
    """A person or business the tenant serves. Phone is kept as given: normalising to
    E.164 needs a numbering-plan library and the customer's region."""

    name: ShortText | None = None
    email: Email | None = Field(None, description="Stripped and lower-cased.")
    phone: Annotated[str, StringConstraints(max_length=64)] | None = None
    company: ShortText | None = None
    address: Address | None = None
    notes: LongText | None = None


JobStatus = Literal["draft", "scheduled", "in_progress", "completed", "cancelled"]


class Job(FrozenModel):
    """A piece of work for a customer, possibly scheduled."""

    customer_id: UUID | None = Field(None, description="Canonical id of the customer.")
    title: ShortText | None = None
    description: LongText | None = None
    status: JobStatus | None = None
    scheduled_start: AwareDatetime | None = None
    scheduled_end: AwareDatetime | None = None
    site_address: Address | None = None
    priority: Literal["low", "normal", "high", "urgent"] = "normal"

    @model_validator(mode="after")
    def _end_not_before_start(self) -> Self:
        start, end = self.scheduled_start, self.scheduled_end
        if start is not None and end is not None and end < start:
            raise ValueError("scheduled_end must not be before scheduled_start")
        return self


class InvoiceLine(FrozenModel):
    """One line of an invoice: quantity times unit amount, plus its tax."""

    description: Annotated[str, StringConstraints(max_length=4_000)] | None = None
    quantity: Quantity
    unit_amount: SignedMinorUnits
    tax_amount: SignedMinorUnits = 0

    @property
    def amount(self) -> int:
        """Line amount before tax: quantity times unit amount, rounded half to even."""
        return line_amount(self.quantity, self.unit_amount)


def line_totals(lines: Iterable[InvoiceLine]) -> tuple[int, int]:
    """``(subtotal, tax)`` of ``lines``, each line rounded on its own, as providers do."""
    subtotal = tax = 0
    for line in lines:
        subtotal += line.amount
        tax += line.tax_amount
    return subtotal, tax


InvoiceStatus = Literal["draft", "open", "paid", "void", "overdue"]


class Invoice(FrozenModel):
    """An invoice. Subtotal is after discounts and before tax.

    Checked: ``total == subtotal + tax`` whenever all three are present (every provider's
    totals reduce to that once discounts are in the subtotal).

    Deliberately not checked, because real providers break them with valid data:
    - ``amount_due <= total``: Stripe adds a customer's outstanding balance to amount_due.
    - lines summing to subtotal and tax: Stripe sends only the first page of lines,
      Xero's tax-inclusive lines carry tax in the unit amount, line-level discounts and
      Stripe's fractional ``unit_amount_decimal`` make quantity times unit differ from the
      provider's own line amount. ``line_totals`` computes them when that is wanted.
    - ``due_on >= issued_on``: providers accept either order.
    """

    customer_id: UUID | None = Field(None, description="Canonical id of the customer.")
    job_id: UUID | None = Field(None, description="Canonical id of the job.")
    number: ShortText | None = Field(None, description="Invoice number shown to the customer.")
    status: InvoiceStatus | None = None
    currency: Currency | None = None
    issued_on: date | None = None
    due_on: date | None = None
    lines: tuple[InvoiceLine, ...] | None = None
    subtotal: MinorUnits | None = None
    tax: MinorUnits | None = None
    total: MinorUnits | None = None
    amount_due: MinorUnits | None = None

    @model_validator(mode="after")
    def _total_is_subtotal_plus_tax(self) -> Self:
        subtotal, tax, total = self.subtotal, self.tax, self.total
        if subtotal is None or tax is None or total is None:
            return self  # a partial update: the processor checks the merged record
        if total != subtotal + tax:
            raise ValueError(f"total {total} must equal subtotal {subtotal} + tax {tax}")
        return self


PaymentStatus = Literal["pending", "succeeded", "failed", "refunded"]


class Payment(FrozenModel):
    """Money received against an invoice. A refund is a status, not a negative amount."""

    invoice_id: UUID | None = Field(None, description="Canonical id of the invoice.")
    customer_id: UUID | None = Field(None, description="Canonical id of the customer.")
    amount: Annotated[int, Strict(), Field(gt=0, le=MAX_MINOR_UNITS)] | None = Field(
        None, description="Integer minor units (cents), positive."
    )
    currency: Currency | None = None
    status: PaymentStatus | None = None
    method: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        None, description="Card, bank transfer, cash, … as the provider names it."
    )
    paid_at: AwareDatetime | None = None
    reference: ShortText | None = None


ENTITY_MODELS: dict[str, type[FrozenModel]] = {
    "customer": Customer,
    "job": Job,
    "invoice": Invoice,
    "payment": Payment,
}


def field_names(entity_type: str) -> tuple[str, ...]:
    """The canonical fields of ``entity_type``, in declaration order."""
    try:
        model = ENTITY_MODELS[entity_type]
    except KeyError:
        raise ValueError(f"unknown entity type {entity_type!r}") from None
    return tuple(model.model_fields)


class CanonicalRecord(Event):
    """What the outbox relay publishes to ``records.changed`` after a commit.

    ``state`` is the full canonical state as JSON (``model_dump(mode="json")``). It is not
    validated against the entity model here, so a consumer on an older release still
    reads the envelope when a newer one added a field; ``entity()`` parses it on demand.
    """

    tenant_id: UUID
    entity_type: EntityType
    entity_id: UUID
    version: int = Field(ge=1, description="Version of the record; +1 per committed change.")
    deleted: bool = False
    origin_connection_id: UUID | None = Field(
        None, description="Connection the change came from; None if internal. Never echoed."
    )
    change_id: UUID = Field(description="Id of the committed change (the outbox row).")
    committed_at: AwareDatetime
    state: dict[str, JsonValue] = Field(description="Full canonical state after the change.")

    def entity(self) -> FrozenModel:
        """``state`` as its canonical model (Customer, Job, Invoice or Payment)."""
        return ENTITY_MODELS[self.entity_type].model_validate(self.state)
