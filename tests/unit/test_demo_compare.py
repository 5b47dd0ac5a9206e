"""The demo's convergence check: per system, per kind it holds, every field it compares;
only a provider's documented rule turns a difference into a reported exception."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from connectors.spec import EntityType, RemoteRecord
from crmsync.demo.compare import (
    PAYPAL_RECIPIENT,
    QUICKBOOKS_LINE_TAX,
    STRIPE_PART_PAID,
    STRIPE_UNCONFIRMED,
    Outcome,
    Seen,
    compare_kind,
)

AT = datetime(2026, 12, 5, tzinfo=UTC)
CUSTOMER = uuid.uuid4()
JOB = uuid.uuid4()
INVOICE = uuid.uuid4()
PAYMENT = uuid.uuid4()
ALL: tuple[EntityType, ...] = ("customer", "job", "invoice", "payment")
NO_JOBS: tuple[EntityType, ...] = ("customer", "invoice", "payment")
LINES = [
    {"description": "Labour", "quantity": "3", "unit_amount": 9500, "tax_amount": 2850},
    {"description": "Parts", "quantity": "1", "unit_amount": 12000, "tax_amount": 0},
]
INVOICE_DATA: dict[str, Any] = {
    "customer_id": str(CUSTOMER),
    "job_id": str(JOB),
    "number": "INV-1",
    "status": "open",
    "currency": "AUD",
    "lines": LINES,
    "subtotal": 40500,
    "tax": 2850,
    "total": 43350,
    "amount_due": 28350,
}
PAYMENT_DATA: dict[str, Any] = {
    "invoice_id": str(INVOICE),
    "amount": 15000,
    "currency": "AUD",
    "status": "succeeded",
}


def seen(
    kind: EntityType, data: dict[str, Any], entity_id: uuid.UUID | None, **refs: uuid.UUID | None
) -> Seen:
    mapped = {k: v for k, v in data.items() if not k.endswith("_id")}
    return Seen(RemoteRecord(kind, "ext-1", AT, mapped), entity_id, dict(refs))


def run(
    system: str,
    kind: EntityType,
    item: Seen,
    canonical: dict[str, Any],
    holds: tuple[EntityType, ...] = ALL,
) -> Outcome:
    outcome = Outcome()
    compare_kind(
        system,
        kind,
        [item],
        {item.entity_id or uuid.uuid4(): canonical},
        holds=holds,
        outcome=outcome,
    )
    return outcome


def test_the_same_invoice_has_no_difference_whatever_form_its_quantities_take() -> None:
    lines = [{**line, "quantity": f"{line['quantity']}.0"} for line in LINES]
    lines[1].pop("tax_amount")  # an untaxed line read without its zero
    item = seen(
        "invoice", {**INVOICE_DATA, "lines": lines}, INVOICE, customer_id=CUSTOMER, job_id=JOB
    )
    outcome = run("ascora", "invoice", item, INVOICE_DATA)
    assert outcome.differences == []
    assert outcome.exceptions == []
    assert outcome.compared == {("ascora", "invoice"): 1}


def test_a_different_line_tax_is_a_difference() -> None:
    lines = [dict(line) for line in LINES]
    lines[0]["tax_amount"] = 0
    item = seen(
        "invoice", {**INVOICE_DATA, "lines": lines}, INVOICE, customer_id=CUSTOMER, job_id=JOB
    )
    [difference] = run("xero", "invoice", item, INVOICE_DATA, NO_JOBS).differences
    assert difference.startswith("xero invoice ext-1 lines:")


def test_an_amount_due_that_differs_outside_stripe_is_a_difference() -> None:
    item = seen("invoice", {**INVOICE_DATA, "amount_due": 43350}, INVOICE, customer_id=CUSTOMER)
    outcome = run("xero", "invoice", item, INVOICE_DATA, NO_JOBS)
    assert outcome.differences == ["xero invoice ext-1 amount_due: 43350, Postgres 28350"]
    assert outcome.exceptions == []


def test_stripes_whole_amount_remaining_on_a_part_paid_invoice_is_its_documented_rule() -> None:
    item = seen("invoice", {**INVOICE_DATA, "amount_due": 43350}, INVOICE, customer_id=CUSTOMER)
    outcome = run("stripe", "invoice", item, INVOICE_DATA, NO_JOBS)
    assert outcome.differences == []
    [exception] = outcome.exceptions
    assert "amount_due: 43350, Postgres 28350" in exception
    assert STRIPE_PART_PAID.rule in exception


def test_any_other_amount_due_at_stripe_is_still_a_difference() -> None:
    for theirs, status in ((20000, "open"), (43350, "paid")):
        canonical = {**INVOICE_DATA, "status": status}
        data = {**canonical, "amount_due": theirs}
        item = seen("invoice", data, INVOICE, customer_id=CUSTOMER)
        outcome = run("stripe", "invoice", item, canonical, NO_JOBS)
        assert outcome.exceptions == []
        assert len(outcome.differences) == 1


def test_the_job_reference_is_compared_only_where_jobs_are_held() -> None:
    item = seen("invoice", INVOICE_DATA, INVOICE, customer_id=CUSTOMER)  # no job there
    assert run("stripe", "invoice", item, INVOICE_DATA, NO_JOBS).differences == []
    [difference] = run("ascora", "invoice", item, INVOICE_DATA, ALL).differences
    assert difference == f"ascora invoice ext-1 job_id: None, Postgres UUID('{JOB}')"


def test_a_payment_on_another_invoice_is_a_difference() -> None:
    item = seen("payment", PAYMENT_DATA, PAYMENT, invoice_id=uuid.uuid4())
    [difference] = run("xero", "payment", item, PAYMENT_DATA, NO_JOBS).differences
    assert "invoice_id" in difference


def test_stripes_unconfirmed_intent_for_a_payment_made_elsewhere_is_its_documented_rule() -> None:
    item = seen("payment", {**PAYMENT_DATA, "status": "pending"}, PAYMENT, invoice_id=INVOICE)
    outcome = run("stripe", "payment", item, PAYMENT_DATA, NO_JOBS)
    assert outcome.differences == []
    [exception] = outcome.exceptions
    assert STRIPE_UNCONFIRMED.rule in exception
    # The same difference anywhere else is one.
    assert len(run("xero", "payment", item, PAYMENT_DATA, NO_JOBS).differences) == 1


def test_a_failed_payment_at_stripe_is_a_difference() -> None:
    item = seen("payment", {**PAYMENT_DATA, "status": "failed"}, PAYMENT, invoice_id=INVOICE)
    outcome = run("stripe", "payment", item, PAYMENT_DATA, NO_JOBS)
    assert outcome.exceptions == []
    assert len(outcome.differences) == 1


def test_unlinked_and_missing_records_are_differences() -> None:
    outcome = Outcome()
    unlinked = seen("job", {"title": "Repair"}, None)
    compare_kind(
        "ascora", "job", [unlinked], {JOB: {"title": "Repair"}}, holds=ALL, outcome=outcome
    )
    assert outcome.differences == [
        "ascora job ext-1: not linked to a canonical record",
        "ascora: 1 job(s) missing",
    ]


def test_a_payment_made_at_stripe_but_pending_there_is_a_difference() -> None:
    item = seen("payment", {**PAYMENT_DATA, "status": "pending"}, PAYMENT, invoice_id=INVOICE)
    outcome = Outcome()
    compare_kind(
        "stripe",
        "payment",
        [item],
        {PAYMENT: PAYMENT_DATA},
        holds=NO_JOBS,
        outcome=outcome,
        sources={PAYMENT: {"status": "stripe"}},
    )
    assert outcome.exceptions == []
    assert outcome.differences == ["stripe payment ext-1 status: 'pending', Postgres 'succeeded'"]


def test_quickbooks_lines_without_their_tax_are_its_documented_rule_and_nothing_else() -> None:
    untaxed = [{**line, "tax_amount": 0} for line in LINES]
    item = seen("invoice", {**INVOICE_DATA, "lines": untaxed}, INVOICE, customer_id=CUSTOMER)
    outcome = run("quickbooks", "invoice", item, INVOICE_DATA, NO_JOBS)
    assert outcome.differences == []
    [exception] = outcome.exceptions
    assert QUICKBOOKS_LINE_TAX.rule in exception
    # Another line difference at QuickBooks is one; so is untaxed lines anywhere else.
    other = [{**line, "unit_amount": 1} for line in untaxed]
    item = seen("invoice", {**INVOICE_DATA, "lines": other}, INVOICE, customer_id=CUSTOMER)
    assert len(run("quickbooks", "invoice", item, INVOICE_DATA, NO_JOBS).differences) == 1
    item = seen("invoice", {**INVOICE_DATA, "lines": untaxed}, INVOICE, customer_id=CUSTOMER)
    assert len(run("xero", "invoice", item, INVOICE_DATA, NO_JOBS).differences) == 1


def test_a_system_holding_customers_as_recipients_must_hold_only_those_billed() -> None:
    """PayPal holds a customer only as an invoice's recipient: the report counted every
    customer no invoice of its addresses as missing there."""
    billed, other = uuid.uuid4(), uuid.uuid4()
    canonical = {
        billed: {"name": "Bayview Landscapes", "email": "team@bayview.example", "phone": "+61 2"},
        other: {"name": "Summit Air", "email": "service@summit.example", "phone": "+61 3"},
    }
    recipient = seen("customer", {"email": "team@bayview.example"}, billed)
    outcome = Outcome()
    compare_kind(
        "paypal",
        "customer",
        [recipient],
        canonical,
        holds=NO_JOBS,
        outcome=outcome,
        expected={billed},
    )
    assert outcome.differences == []
    assert sorted(e.split(":")[0] for e in outcome.exceptions) == [
        "paypal customer ext-1 name",
        "paypal customer ext-1 phone",
    ]
    assert all(PAYPAL_RECIPIENT.rule in e for e in outcome.exceptions)
    # A customer it does hold differently is a difference; one it should hold, missing.
    wrong = seen("customer", {"email": "team@bayview.example", "name": "Bayview Pty"}, billed)
    outcome = Outcome()
    compare_kind(
        "paypal", "customer", [wrong], canonical, holds=NO_JOBS, outcome=outcome, expected=set()
    )
    assert outcome.differences == [
        "paypal customer ext-1 name: 'Bayview Pty', Postgres 'Bayview Landscapes'"
    ]
    outcome = Outcome()
    compare_kind("paypal", "customer", [], canonical, holds=NO_JOBS, outcome=outcome)
    assert outcome.differences == ["paypal: 2 customer(s) missing"]
    # Elsewhere a customer without its name or phone is a difference.
    outcome = Outcome()
    compare_kind("xero", "customer", [recipient], canonical, holds=NO_JOBS, outcome=outcome)
    assert len(outcome.differences) == 3
