from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import get_args

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.base import FrozenModel
from schemas.changes import EntityType
from schemas.records import (
    ACCEPTED_CURRENCIES,
    ENTITY_MODELS,
    ISO_4217_ACTIVE,
    ISO_4217_RECENTLY_WITHDRAWN,
    MAX_MINOR_UNITS,
    Address,
    CanonicalRecord,
    Customer,
    Invoice,
    InvoiceLine,
    Job,
    Payment,
    field_names,
    line_totals,
)

AT = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)
CUSTOMER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
JOB_ID = uuid.UUID("00000000-0000-4000-8000-000000000002")
INVOICE_ID = uuid.UUID("00000000-0000-4000-8000-000000000003")

ADDRESS = Address(
    line1="1 Harbour St", city="Sydney", region="NSW", postal_code="2000", country="AU"
)
CUSTOMER = Customer(
    name="Jane Doe",
    email="jane@example.com",
    phone="+61 2 9999 0000",
    company="Doe Plumbing",
    address=ADDRESS,
    notes="Gate code 1234",
)
JOB = Job(
    customer_id=CUSTOMER_ID,
    title="Fix leak",
    description="Kitchen sink",
    status="scheduled",
    scheduled_start=AT,
    scheduled_end=AT + timedelta(hours=2),
    site_address=ADDRESS,
    priority="high",
)
LINES = (
    InvoiceLine(description="Labour", quantity=Decimal("1.5"), unit_amount=9000, tax_amount=1350),
    InvoiceLine(description="Washer", quantity=Decimal(3), unit_amount=250, tax_amount=75),
    InvoiceLine(description="Loyalty discount", quantity=Decimal(1), unit_amount=-1000),
)
INVOICE = Invoice(
    customer_id=CUSTOMER_ID,
    job_id=JOB_ID,
    number="INV-0042",
    status="open",
    currency="AUD",
    issued_on=date(2026, 3, 4),
    due_on=date(2026, 3, 18),
    lines=LINES,
    subtotal=13250,
    tax=1425,
    total=14675,
    amount_due=14675,
)
PAYMENT = Payment(
    invoice_id=INVOICE_ID,
    customer_id=CUSTOMER_ID,
    amount=14675,
    currency="AUD",
    status="succeeded",
    method="card",
    paid_at=AT,
    reference="ch_123",
)
RECORD = CanonicalRecord(
    tenant_id=uuid.uuid4(),
    entity_type="invoice",
    entity_id=INVOICE_ID,
    version=3,
    origin_connection_id=uuid.uuid4(),
    change_id=uuid.uuid4(),
    committed_at=AT,
    state=INVOICE.model_dump(mode="json"),
)
EXAMPLES: list[FrozenModel] = [ADDRESS, CUSTOMER, JOB, *LINES, INVOICE, PAYMENT, RECORD]


def _ids(model: BaseModel) -> str:
    return type(model).__name__


# --- money -------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [12.5, 12.0, "12.5", "1250", True, False, Decimal(1250)])
def test_money_rejects_floats_strings_and_bools(amount: object) -> None:
    with pytest.raises(ValidationError):
        Payment(amount=amount)
    with pytest.raises(ValidationError):
        InvoiceLine(quantity=Decimal(1), unit_amount=amount)


@pytest.mark.parametrize("raw", ["12.5", "12.0", '"12.5"', '"1250"', "true"])
def test_money_rejects_floats_strings_and_bools_in_json(raw: str) -> None:
    with pytest.raises(ValidationError):
        Invoice.model_validate_json(f'{{"amount_due": {raw}}}')


def test_money_accepts_integer_minor_units() -> None:
    assert Invoice.model_validate_json('{"amount_due": 1250}').amount_due == 1250


@pytest.mark.parametrize("field", ["subtotal", "tax", "total", "amount_due"])
def test_invoice_amounts_reject_negatives(field: str) -> None:
    with pytest.raises(ValidationError):
        Invoice.model_validate({field: -1})


def test_payment_amount_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        Payment(amount=0)
    with pytest.raises(ValidationError):
        Payment(amount=-100)


def test_line_amounts_may_be_negative_for_discounts() -> None:
    line = InvoiceLine(quantity=Decimal(1), unit_amount=-500, tax_amount=-50)
    assert line.amount == -500


def test_amounts_beyond_int64_rejected() -> None:
    assert Payment(amount=MAX_MINOR_UNITS).amount == MAX_MINOR_UNITS
    with pytest.raises(ValidationError):
        Payment(amount=MAX_MINOR_UNITS + 1)


# --- currency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["usd", "US", "XXX-not-a-code", "USDD", "", "ABC", "XXX", "\uff35\uff33\uff24"]
)
def test_currency_rejects_malformed_and_unknown_codes(code: str) -> None:
    with pytest.raises(ValidationError):
        Payment(currency=code)


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY", "AUD", "XCG", "ZWG", "HRK"])
def test_currency_accepts_active_and_recently_withdrawn_codes(code: str) -> None:
    assert Payment(currency=code).currency == code


def test_currency_list_is_well_formed() -> None:
    assert len(ISO_4217_ACTIVE) > 170
    assert all(len(c) == 3 and c.isascii() and c.isupper() for c in ISO_4217_ACTIVE)
    assert not ISO_4217_ACTIVE & ISO_4217_RECENTLY_WITHDRAWN
    assert "XXX" not in ACCEPTED_CURRENCIES


# --- time --------------------------------------------------------------------------------


NAIVE = datetime(2026, 3, 4, 9, 30)


@pytest.mark.parametrize(
    ("model", "field"),
    [(Job, "scheduled_start"), (Job, "scheduled_end"), (Payment, "paid_at")],
)
def test_naive_datetimes_rejected(model: type[FrozenModel], field: str) -> None:
    with pytest.raises(ValidationError, match="timezone"):
        model.model_validate({field: NAIVE})


def test_canonical_record_rejects_naive_committed_at() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RECORD.model_validate({**RECORD.model_dump(), "committed_at": NAIVE})


def test_job_rejects_end_before_start() -> None:
    with pytest.raises(ValidationError, match="scheduled_end"):
        Job(scheduled_start=AT, scheduled_end=AT - timedelta(minutes=1))
    assert Job(scheduled_start=AT, scheduled_end=AT).scheduled_end == AT


def test_job_compares_start_and_end_across_time_zones() -> None:
    sydney = AT.astimezone(timezone(timedelta(hours=11)))
    assert Job(scheduled_start=AT, scheduled_end=sydney + timedelta(minutes=1))
    with pytest.raises(ValidationError):
        Job(scheduled_start=AT, scheduled_end=sydney - timedelta(minutes=1))


def test_invoice_dates_are_dates() -> None:
    assert Invoice.model_validate_json('{"issued_on": "2026-03-04"}').issued_on == date(2026, 3, 4)
    with pytest.raises(ValidationError):
        Invoice.model_validate_json('{"issued_on": "2026-03-04T10:00:00Z"}')


# --- invoice consistency -----------------------------------------------------------------


def test_invoice_rejects_total_other_than_subtotal_plus_tax() -> None:
    with pytest.raises(ValidationError, match="subtotal"):
        Invoice(subtotal=1000, tax=100, total=1000)


def test_invoice_with_only_some_totals_is_a_valid_partial_update() -> None:
    assert Invoice(total=1100).total == 1100
    assert Invoice(subtotal=1000, tax=100).total is None


def test_invoice_allows_amount_due_above_total() -> None:
    # Stripe adds a customer's earlier unpaid balance to amount_due.
    assert Invoice(subtotal=1000, tax=0, total=1000, amount_due=1500).amount_due == 1500


def test_invoice_allows_lines_that_do_not_sum_to_totals() -> None:
    # Stripe sends only the first page of lines; Xero's tax-inclusive unit amounts differ.
    invoice = Invoice(lines=LINES[:1], subtotal=99, tax=1, total=100)
    assert line_totals(invoice.lines or ()) != (99, 1)


def test_line_totals_sum_each_line_rounded_half_to_even() -> None:
    assert line_totals(LINES) == (13250, 1425)
    halves = [InvoiceLine(quantity=Decimal("0.5"), unit_amount=a) for a in (1, 3, 5, -1, -3)]
    assert [line.amount for line in halves] == [0, 2, 2, 0, -2]
    assert line_totals(halves) == (2, 0)


def test_line_amount_is_exact_for_large_values() -> None:
    # 42 significant digits: the default decimal context (28) cannot even hold the result.
    quantity, unit_amount = "12345678901234.5678901234", 987654321987654321
    line = InvoiceLine(quantity=Decimal(quantity), unit_amount=unit_amount)
    assert line.amount == round(Fraction(quantity) * unit_amount)


# --- quantities --------------------------------------------------------------------------


def test_quantity_round_trips_through_json_as_string_without_float_drift() -> None:
    line = InvoiceLine(quantity=Decimal("0.1") * 3, unit_amount=1000)
    raw = line.model_dump_json()
    assert '"quantity":"0.3"' in raw
    assert InvoiceLine.model_validate_json(raw).quantity == Decimal("0.3")
    assert line.model_dump(mode="json")["quantity"] == "0.3"


@pytest.mark.parametrize(
    ("given", "written"), [("1E-7", "0.0000001"), ("1E+2", "100"), ("-0", "0")]
)
def test_quantity_written_in_fixed_point(given: str, written: str) -> None:
    line = InvoiceLine(quantity=Decimal(given), unit_amount=1)
    assert line.model_dump(mode="json")["quantity"] == written
    assert InvoiceLine.model_validate_json(line.model_dump_json()) == line


@pytest.mark.parametrize("quantity", [0.1, 1.0, True, "-1", "NaN", "Infinity", "0.00000000001"])
def test_quantity_rejects_floats_bools_negatives_and_non_finite(quantity: object) -> None:
    with pytest.raises(ValidationError):
        InvoiceLine(quantity=quantity, unit_amount=1)


def test_quantity_rejects_json_numbers_with_fractions_but_takes_integers() -> None:
    with pytest.raises(ValidationError, match="float"):
        InvoiceLine.model_validate_json('{"quantity": 0.1, "unit_amount": 1}')
    line = InvoiceLine.model_validate_json('{"quantity": 2, "unit_amount": 1}')
    assert line.quantity == Decimal(2)


# --- text fields -------------------------------------------------------------------------


def test_email_is_stripped_and_lower_cased() -> None:
    assert Customer(email="  Jane.Doe@Example.COM\n").email == "jane.doe@example.com"


@pytest.mark.parametrize(
    "email",
    ["", "jane", "jane@", "@example.com", "jane@example", "ja ne@example.com", "a@b@c.com",
     "jane@example..com", f"{'j' * 65}@example.com", f"jane@{'e' * 250}.com"],
)  # fmt: skip
def test_email_rejects_malformed_addresses(email: str) -> None:
    with pytest.raises(ValidationError):
        Customer(email=email)


@pytest.mark.parametrize("country", ["au", "AUS", "A1", ""])
def test_address_country_must_be_alpha2_upper_case(country: str) -> None:
    with pytest.raises(ValidationError):
        Address(country=country)


def test_text_fields_are_bounded() -> None:
    with pytest.raises(ValidationError):
        Customer(name="x" * 256)
    with pytest.raises(ValidationError):
        Address(postal_code="1" * 33)


# --- shape -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", EXAMPLES, ids=_ids)
def test_unknown_fields_rejected(model: FrozenModel) -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        type(model).model_validate({**model.model_dump(), "surprise": 1})


@pytest.mark.parametrize("model", EXAMPLES, ids=_ids)
def test_models_are_frozen(model: FrozenModel) -> None:
    name = next(iter(type(model).model_fields))
    with pytest.raises(ValidationError, match="frozen"):
        setattr(model, name, None)


@pytest.mark.parametrize("model", EXAMPLES, ids=_ids)
def test_json_round_trip_of_each_model_equals_itself(model: FrozenModel) -> None:
    again = type(model).model_validate_json(model.model_dump_json())
    assert again == model
    assert again.model_dump_json() == model.model_dump_json()


def test_partial_update_keeps_only_the_fields_sent() -> None:
    update = Customer.model_validate({"email": None, "phone": "123"})
    assert update.model_dump(exclude_unset=True) == {"email": None, "phone": "123"}
    assert Job.model_validate({}).model_dump(exclude_unset=True) == {}


def test_entity_models_cover_every_entity_type() -> None:
    assert set(ENTITY_MODELS) == set(get_args(EntityType))


def test_field_names_lists_the_canonical_fields_in_order() -> None:
    assert field_names("customer") == ("name", "email", "phone", "company", "address", "notes")
    assert field_names("invoice")[:3] == ("customer_id", "job_id", "number")
    assert "amount" in field_names("payment")


def test_field_names_rejects_unknown_entity_type() -> None:
    with pytest.raises(ValueError, match="quote"):
        field_names("quote")


def test_canonical_record_parses_its_state_as_the_entity() -> None:
    assert RECORD.entity() == INVOICE
    assert RECORD.deleted is False
    assert RECORD.schema_version == 1


def test_canonical_record_version_starts_at_one() -> None:
    with pytest.raises(ValidationError):
        RECORD.model_validate({**RECORD.model_dump(), "version": 0})


# --- property ----------------------------------------------------------------------------

lines_strategy = st.builds(
    InvoiceLine,
    description=st.none() | st.text(max_size=40),
    quantity=st.decimals(min_value=0, max_value=10**6, places=4),
    unit_amount=st.integers(min_value=-(10**6), max_value=10**9),
    tax_amount=st.integers(min_value=-(10**5), max_value=10**8),
)


@st.composite
def invoices(draw: st.DrawFn) -> Invoice:
    lines = draw(st.lists(lines_strategy, max_size=15))
    subtotal, tax = line_totals(lines)
    assume(subtotal >= 0 and tax >= 0)
    issued_on = draw(st.dates())
    return Invoice(
        customer_id=draw(st.none() | st.uuids()),
        job_id=draw(st.none() | st.uuids()),
        number=draw(st.none() | st.text(max_size=20)),
        status=draw(st.sampled_from(["draft", "open", "paid", "void", "overdue"])),
        currency=draw(st.sampled_from(sorted(ACCEPTED_CURRENCIES))),
        issued_on=issued_on,
        due_on=draw(st.none() | st.dates(min_value=issued_on)),
        lines=tuple(lines),
        subtotal=subtotal,
        tax=tax,
        total=subtotal + tax,
        amount_due=draw(st.integers(min_value=0, max_value=subtotal + tax)),
    )


@given(invoices())
def test_any_valid_invoice_round_trips_through_json_unchanged(invoice: Invoice) -> None:
    raw = invoice.model_dump_json()
    again = Invoice.model_validate_json(raw)
    assert again == invoice
    assert again.model_dump_json() == raw
    assert [line.quantity for line in again.lines or ()] == [
        line.quantity for line in invoice.lines or ()
    ]
