"""What a Xero invoice in its current state can still take (connectors/xero/lifecycle.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from connectors.spec import RemoteRecord
from connectors.xero.lifecycle import PAYMENT_ALLOCATED, plan_update

LINES = [{"description": "Callout", "quantity": "1", "unit_amount": 15000, "tax_amount": 0}]
HELD = {"number": "INV-1", "status": "open", "currency": "NZD", "lines": LINES}


def _current(**data: Any) -> RemoteRecord:
    return RemoteRecord(
        entity_type="invoice",
        external_id="inv-1",
        updated_at=datetime(2026, 12, 1, tzinfo=UTC),
        data={**HELD, **data},
        refs={"customer_id": "contact-1"},
    )


REFS = {"customer_id": "contact-1"}
NEW_LINES = [{"description": "Callout, after hours", "quantity": "1", "unit_amount": 15000}]


def test_an_unchanged_invoice_costs_no_write() -> None:
    plan = plan_update("AUTHORISED", Decimal(0), _current(), dict(HELD), REFS)
    assert (plan.writes, plan.refused) == (False, ())


def test_only_the_changed_fields_are_sent() -> None:
    wanted = {**HELD, "due_on": "2026-12-31"}
    plan = plan_update("AUTHORISED", Decimal(0), _current(), wanted, REFS)
    assert (plan.send, plan.status, plan.refused) == ({"due_on": "2026-12-31"}, None, ())


def test_a_paid_invoice_takes_no_edit() -> None:
    wanted = {**HELD, "status": "paid", "lines": NEW_LINES}
    plan = plan_update("PAID", Decimal("150.00"), _current(status="paid"), wanted, REFS)
    assert not plan.writes
    [refused] = plan.refused
    assert refused.startswith(PAYMENT_ALLOCATED)
    assert "lines" in refused


def test_a_part_paid_invoice_cannot_be_voided_or_edited() -> None:
    wanted = {**HELD, "status": "void"}
    plan = plan_update("AUTHORISED", Decimal("10"), _current(), wanted, REFS)
    assert not plan.writes
    assert "voids it only after they are removed" in plan.refused[0]


def test_paid_is_xeros_own_status_not_an_edit() -> None:
    wanted = {**HELD, "status": "paid"}
    plan = plan_update("PAID", Decimal("150.00"), _current(status="paid"), wanted, REFS)
    assert (plan.writes, plan.refused) == (False, ())


def test_an_approved_invoice_keeps_its_status_but_takes_the_rest() -> None:
    wanted = {**HELD, "status": "draft", "lines": NEW_LINES}
    plan = plan_update("AUTHORISED", Decimal(0), _current(), wanted, REFS)
    assert plan.send == {"lines": NEW_LINES, "currency": "NZD"}
    assert plan.status is None
    assert "cannot return to draft" in plan.refused[0]


@pytest.mark.parametrize(
    ("status", "target", "sent"),
    [
        ("DRAFT", "open", "AUTHORISED"),
        ("DRAFT", "void", "DELETED"),  # Xero voids only approved invoices
        ("AUTHORISED", "void", "VOIDED"),
        ("SUBMITTED", "draft", None),  # both read as draft
    ],
)
def test_status_moves_xero_allows(status: str, target: str, sent: str | None) -> None:
    current = _current(status="draft" if status != "AUTHORISED" else "open")
    plan = plan_update(status, Decimal(0), current, {**HELD, "status": target}, REFS)
    assert (plan.status, plan.refused) == (sent, ())


def test_a_voided_invoice_is_final() -> None:
    plan = plan_update("VOIDED", Decimal(0), _current(status="void"), HELD, REFS)
    assert not plan.writes
    assert "final" in plan.refused[0]
    void = plan_update(
        "VOIDED", Decimal(0), _current(status="void"), {**HELD, "status": "void"}, REFS
    )
    assert (void.writes, void.refused) == (False, ())


def test_a_new_contact_is_a_change() -> None:
    plan = plan_update("DRAFT", Decimal(0), _current(), dict(HELD), {"customer_id": "contact-2"})
    assert plan.send == {}
    assert plan.writes
