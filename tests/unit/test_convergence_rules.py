"""The provider rules a convergence run accepts (tests/convergence/rules.py): each one is
written where it says, and matches only its own provider, kind and words."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.registry import CAPABILITIES
from connectors.xero.lifecycle import PAYMENT_ALLOCATED
from tests.convergence.rules import (
    REFUSALS,
    VOIDS_INVOICES,
    Refusal,
    held_back,
    not_deletable,
    not_updatable,
    recipient_only,
    refusal,
    voided,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rule", REFUSALS, ids=lambda r: r.name)
def test_every_rule_is_written_in_its_connectors_readme(rule: Refusal) -> None:
    doc = rule.doc
    text = " ".join((ROOT / doc.path).read_text().split())
    assert " ".join(doc.quote.split()) in text


@pytest.mark.parametrize(
    ("provider", "kind", "detail", "name"),
    [
        (
            "stripe",
            "invoice",
            "Stripe invoice in_1 is open: its due_on can change only while it is a draft",
            "stripe: a finalized invoice's draft-only fields are fixed",
        ),
        (
            "xero",
            "invoice",
            f"Xero invoice 5f: {PAYMENT_ALLOCATED} (invoice CV-I7: due_on)",
            "xero: an invoice with a payment allocated takes no edit",
        ),
        (
            "xero",
            "payment",
            "Xero invoice 5f takes no such payment: Payments can only be made against"
            " Authorised documents",
            "xero: payments only against an approved invoice, up to what it owes",
        ),
        (
            "ascora",
            "payment",
            "Ascora invoice 9: a Draft invoice takes no payments (code invoice_not_payable)",
            "ascora: a Draft or Void invoice takes no payments, none beyond its balance",
        ),
        (
            "myob",
            "invoice",
            "MYOB invoice 401fff64-09d6-4ba9-82d6-97057b3c7a5d: MYOB has no void invoices;"
            " delete or reverse it in MYOB",
            "myob: no void sale invoices",
        ),
        (
            "ascora",
            "invoice",
            "Ascora invoice 2fed2f2a-93df-5810-9c54-f006374e98d8: a void invoice cannot change"
            " (code invoice_void)",
            "ascora: a void invoice is final",
        ),
        (
            "myob",
            "invoice",
            "MYOB invoice a045a120-4754-4ddd-b3d7-eab2704fd501: An invoice with payments applied"
            " cannot be deleted; delete the payments first (TransactionHasPayments)",
            "myob: an invoice with payments applied is not deleted",
        ),
        (
            "shopify",
            "invoice",
            "Shopify order 7100000030 is partially_paid: an order that took money is not deleted",
            "shopify: an order that took money is not deleted",
        ),
        (
            "square",
            "invoice",
            "Square invoice 1BCD49A2D27C4F628D9206: a PAID invoice cannot be edited"
            " (payment_requests)",
            "square: a paid, canceled, refunded or failed invoice is final",
        ),
        (
            "paypal",
            "invoice",
            "PayPal invoice INV2-53B0: a PARTIALLY_PAID invoice cannot be edited"
            " (detail.payment_term)",
            "paypal: a paid, partly paid or cancelled invoice takes no edit",
        ),
        (
            "paypal",
            "invoice",
            "PayPal invoice INV2-53B0: a UNPAID invoice cannot return to draft",
            "paypal: a sent invoice cannot return to draft",
        ),
        (
            "paypal",
            "payment",
            "PayPal invoice INV2-2C86 takes no such payment: POST /v2/invoicing/invoices/INV2-2C86"
            "/payments answered 422: The payment amount is invalid or exceeds the amount due.;"
            " INVALID_PAYMENT_AMOUNT: The payment amount is invalid or exceeds the amount due.",
            "paypal: a payment only on a sent invoice, up to its amount due",
        ),
        (
            "paypal",
            "payment",
            "PayPal payment INV2-E735:EXTR-CD74: a payment cannot be edited, only deleted and"
            " recorded again (note)",
            "paypal: a payment is never edited",
        ),
    ],
)
def test_a_refusal_matches_its_rule(provider: str, kind: str, detail: str, name: str) -> None:
    rule = refusal(provider, kind, detail)
    assert rule is not None
    assert rule.name == name


def test_a_refusal_matches_no_rule_of_another_provider_kind_or_wording() -> None:
    finalized = "Stripe invoice in_1 is open: its due_on can change only while it is a draft"
    assert refusal("xero", "invoice", finalized) is None
    assert refusal("stripe", "payment", finalized) is None
    assert refusal("stripe", "invoice", "Stripe invoice in_1: something else") is None
    assert refusal("ascora", "payment", "Ascora invoice 9: amount (code invalid)") is None


def test_capability_rules_follow_the_capabilities_tables() -> None:
    assert not_updatable("xero", "payment") is not None
    assert not_updatable("ascora", "payment") is not None
    assert not_updatable("xero", "invoice") is None
    assert not_deletable("stripe", "payment") is not None
    assert not_deletable("xero", "payment") is None
    assert held_back("xero", "payment", {"status": "pending"}) is not None
    assert held_back("xero", "payment", {"status": "succeeded"}) is None
    assert held_back("ascora", "payment", {"status": "pending"}) is not None
    assert held_back("ascora", "payment", {"status": "succeeded"}) is None
    assert held_back("stripe", "payment", {"status": "pending"}) is None


@pytest.mark.parametrize("provider", sorted(VOIDS_INVOICES))
def test_a_voided_invoice_rule_is_its_providers_delete_capability(provider: str) -> None:
    assert VOIDS_INVOICES[provider] in CAPABILITIES[provider]["invoice"].delete.why
    assert voided(provider, "invoice", {"status": "void"}) is not None
    assert voided(provider, "invoice", {"status": "open"}) is None
    assert voided(provider, "payment", {"status": "void"}) is None
    assert voided("quickbooks", "invoice", {"status": "void"}) is None


def test_only_paypal_holds_customers_as_invoice_recipients() -> None:
    held = recipient_only("paypal", "customer")
    assert held is not None
    assert CAPABILITIES["paypal"]["customer"].create.why in held
    assert recipient_only("paypal", "invoice") is None
    assert recipient_only("xero", "customer") is None
