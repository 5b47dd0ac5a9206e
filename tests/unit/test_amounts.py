"""Derived amounts (services/processor/amounts.py): the rules, pure. Both apply paths are
held to them in tests/integration/test_derived_amounts.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.processor.amounts import (
    DERIVED_SOURCE,
    Move,
    amount_paid,
    derive,
    invoice_moves,
    invoices_moved,
)
from services.processor.decide import Decision, InboundChange, Outcome, Record, Rule, Write
from services.processor.merge import FieldMeta, RecordState

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
TENANT = uuid.UUID(int=1)
XERO = uuid.UUID(int=0xA)
STRIPE = uuid.UUID(int=0xB)
INVOICE = uuid.UUID(int=0x1)
OTHER = uuid.UUID(int=0x2)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def invoice(
    *, meta: dict[str, FieldMeta] | None = None, deleted: bool = False, **fields: Any
) -> Record:
    values = {"currency": "AUD", "total": 1100, "status": "open", **fields}
    held = {name: FieldMeta(T0, str(XERO)) for name in values} | (meta or {})
    return Record(INVOICE, RecordState(values, held), 1, deleted)


def paid(amount: int, *, status: str = "succeeded", currency: str = "AUD") -> dict[str, Any]:
    return {"amount": amount, "currency": currency, "status": status}


def test_amount_paid_counts_succeeded_payments_in_the_invoices_currency_only() -> None:
    payments = [
        paid(300),
        paid(200),
        paid(100, status="refunded"),
        paid(100, status="pending"),
        paid(100, status="failed"),
        paid(100, currency="NZD"),
    ]
    assert amount_paid({"currency": "AUD"}, payments) == 500


@pytest.mark.parametrize(
    ("status", "payments", "expected"),
    [
        ("open", [paid(400)], (700, "open")),
        ("open", [paid(1100)], (0, "paid")),
        ("overdue", [paid(600), paid(500)], (0, "paid")),
        ("open", [paid(2000)], (0, "paid")),  # overpaid: never below 0
        ("paid", [paid(1100, status="refunded")], (1100, "open")),
        ("paid", [], (1100, "open")),  # its payment deleted
        ("draft", [paid(1100)], (0, "draft")),  # a draft keeps its status
    ],
)
def test_derives_amount_due_and_status_from_the_payments(
    status: str, payments: list[dict[str, Any]], expected: tuple[int, str]
) -> None:
    state = derive(
        invoice(status=status, amount_due=1100 if status != "paid" else 0), payments, at(1)
    )
    assert state is not None
    assert (state.values["amount_due"], state.values["status"]) == expected
    assert state.meta["amount_due"] == FieldMeta(at(1), DERIVED_SOURCE)


def test_nothing_changes_when_the_derivation_agrees() -> None:
    assert derive(invoice(amount_due=700), [paid(400)], at(1)) is None


@pytest.mark.parametrize(
    "record",
    [
        invoice(status="void", amount_due=1100),
        invoice(amount_due=1100, deleted=True),
        Record(INVOICE, RecordState({"currency": "AUD", "status": "open"}, {}), 1),  # no total
    ],
    ids=["void", "deleted", "no_total"],
)
def test_leaves_void_deleted_and_totalless_invoices_alone(record: Record) -> None:
    assert derive(record, [paid(1100)], at(1)) is None


def test_a_providers_figure_stated_after_the_payments_stands() -> None:
    # Xero reported 300 due at +5 s (a credit note); the payment we derive from is of +2 s.
    held = {"amount_due": FieldMeta(at(5), str(XERO)), "status": FieldMeta(at(5), str(XERO))}
    assert derive(invoice(amount_due=300, meta=held), [paid(400)], at(2)) is None


def test_a_providers_figure_stated_before_the_payments_gives_way() -> None:
    held = {"amount_due": FieldMeta(at(1), str(XERO))}
    state = derive(invoice(amount_due=1100, meta=held), [paid(400)], at(1))
    assert state is not None
    assert state.values["amount_due"] == 700


def test_a_newer_derivation_replaces_an_older_one_whatever_its_timestamp() -> None:
    # Payments from two systems whose clocks differ: the later derivation counts both.
    held = {"amount_due": FieldMeta(at(9), DERIVED_SOURCE)}
    state = derive(invoice(amount_due=700, meta=held), [paid(400), paid(200)], at(3))
    assert state is not None
    assert state.values["amount_due"] == 500
    assert state.meta["amount_due"] == FieldMeta(at(9), DERIVED_SOURCE)  # never goes back


@given(
    total=st.integers(0, 10**12),
    amounts=st.lists(st.integers(1, 10**12), max_size=6),
    status=st.sampled_from(["draft", "open", "overdue", "paid"]),
)
def test_derived_amount_due_is_never_negative_and_paid_only_when_nothing_is_due(
    total: int, amounts: list[int], status: str
) -> None:
    record = Record(
        INVOICE, RecordState({"currency": "AUD", "total": total, "status": status}, {}), 1
    )
    state = derive(record, [paid(a) for a in amounts], at(1))
    values = state.values if state is not None else record.state.values
    due = values.get("amount_due", total)
    assert due == max(0, total - sum(amounts))
    if status != "draft":
        assert (values["status"] == "paid") == (due == 0)


def payment_decision(write: Write, after: dict[str, Any]) -> Decision:
    return Decision(Outcome.APPLIED, Rule.UPDATE, uuid.uuid4(), write, RecordState(after, {}), 2)


def payment(values: dict[str, Any]) -> Record:
    return Record(uuid.uuid4(), RecordState(values, {}), 1)


def test_a_payment_created_or_deleted_moves_its_invoice() -> None:
    values = {"invoice_id": str(INVOICE), **paid(400)}
    for write in (Write.CREATE, Write.DELETE):
        assert invoices_moved("payment", None, payment_decision(write, values)) == (INVOICE,)


def test_a_payment_moved_to_another_invoice_moves_both() -> None:
    before = payment({"invoice_id": str(INVOICE), **paid(400)})
    after = {"invoice_id": str(OTHER), **paid(400)}
    moved = invoices_moved("payment", before, payment_decision(Write.UPDATE, after))
    assert moved == tuple(sorted((INVOICE, OTHER)))


def test_only_what_pays_moves_an_invoice() -> None:
    before = payment({"invoice_id": str(INVOICE), **paid(400)})
    method = {"invoice_id": str(INVOICE), **paid(400), "method": "card"}
    refunded = {"invoice_id": str(INVOICE), **paid(400, status="refunded")}
    assert invoices_moved("payment", before, payment_decision(Write.UPDATE, method)) == ()
    assert invoices_moved("payment", before, payment_decision(Write.UPDATE, refunded)) == (INVOICE,)
    assert invoices_moved("invoice", None, payment_decision(Write.CREATE, method)) == ()
    provenance = payment_decision(Write.PROVENANCE, refunded)
    assert invoices_moved("payment", before, provenance) == ()


def test_moves_of_one_batch_keep_the_newest_timestamp_and_every_origin() -> None:
    def change(source: uuid.UUID, ts: datetime) -> InboundChange:
        return InboundChange(TENANT, source, "evt", "payment", "upsert", "p", ts, {})

    moves = invoice_moves(
        [(change(XERO, at(5)), (INVOICE,)), (change(XERO, at(2)), (INVOICE, OTHER))]
    )
    assert moves[(TENANT, INVOICE)] == Move(at(5), frozenset({XERO}))
    assert moves[(TENANT, INVOICE)].origin == XERO
    both = invoice_moves([(change(XERO, at(1)), (INVOICE,)), (change(STRIPE, at(1)), (INVOICE,))])
    assert both[(TENANT, INVOICE)].origin is None
    assert invoice_moves([]) == {}
