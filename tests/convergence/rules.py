"""The providers' own rules a convergence run accepts, each named and written down.

A run converges only when every system holds what Postgres holds. Where a provider's
rules leave no way to hold it, the difference is allowed only when a rule below explains
it, for that provider, that kind and that operation, and each rule quotes where its
connector documents it (tests/unit/test_convergence_rules.py keeps the quotes true).
Anything else is a mismatch, and a dead letter no rule explains fails the run.

Two sorts:

- ``REFUSALS``: a ``provider_rule`` dead letter is expected when its provider, kind and
  detail match one (the provider refused that operation by that rule, once). The record
  at that provider then keeps what it held before the refused change (an update), or is
  not there (a create).
- Capabilities: a provider whose capabilities say ✗ for a kind's ``update`` keeps the
  value it was given (the edit is not sent); one that says ✗ for ``delete`` keeps the
  record; one whose ``ApiSpec.holds_back`` names a reason does not hold the record yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from connectors.registry import CAPABILITIES, connector
from tests.convergence.plan import INSIDE, Kind

Operation = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Doc:
    """Where a rule is written: ``quote`` is in ``path`` (whitespace aside)."""

    path: str
    quote: str


@dataclass(frozen=True)
class Refusal:
    """A refusal a provider makes by its own rules: a ``provider_rule`` dead letter of
    ``provider`` about a ``kind`` whose detail matches ``detail``, for ``operation``."""

    name: str
    provider: str
    kind: Kind
    operation: Operation
    detail: re.Pattern[str]
    doc: Doc


_STRIPE = "connectors/stripe/README.md"
_XERO = "connectors/xero/README.md"
_ASCORA = "connectors/ascora/README.md"
_SQUARE = "connectors/square/README.md"
_SHOPIFY = "connectors/shopify/README.md"
_MYOB = "connectors/myob/README.md"
_PAYPAL = "connectors/paypal/README.md"

REFUSALS: tuple[Refusal, ...] = (
    Refusal(
        "stripe: a finalized invoice's draft-only fields are fixed",
        "stripe",
        "invoice",
        "update",
        re.compile(r"^Stripe invoice \S+ is (open|paid|void|uncollectible): its .+ can change"),
        Doc(
            _STRIPE, "draft-only field (`number`, `currency`, dates, lines) of a finalized invoice"
        ),
    ),
    Refusal(
        "stripe: an invoice moves only forward (draft, open, paid or void)",
        "stripe",
        "invoice",
        "update",
        re.compile(r"^Stripe invoice \S+ is \w+: Stripe cannot move it to \w+$"),
        Doc(_STRIPE, "(open → draft, paid → open, void → anything) raise `ProviderRuleError`"),
    ),
    Refusal(
        "stripe: a succeeded payment's amount and currency are fixed",
        "stripe",
        "payment",
        "update",
        re.compile(r"^Stripe payment \S+ is (succeeded|canceled): its .+ cannot change$"),
        Doc(_STRIPE, "A PaymentIntent's `amount`/`currency` cannot change once it has succeeded"),
    ),
    Refusal(
        "xero: an invoice with a payment allocated takes no edit",
        "xero",
        "invoice",
        "update",
        re.compile(r"This document cannot be edited as it has a payment or credit note allocated"),
        Doc(_XERO, "This document cannot be edited as it has a payment or credit note allocated"),
    ),
    Refusal(
        "xero: an approved invoice cannot return to draft",
        "xero",
        "invoice",
        "update",
        re.compile(r"An approved invoice cannot return to draft"),
        Doc(_XERO, "An approved invoice cannot return to draft"),
    ),
    Refusal(
        "xero: a voided or deleted invoice is final",
        "xero",
        "invoice",
        "update",
        re.compile(r"is (VOIDED|DELETED) in Xero, which is final"),
        Doc(_XERO, "| `VOIDED`, `DELETED` | nothing | any change: final |"),
    ),
    Refusal(
        "xero: payments only against an approved invoice, up to what it owes",
        "xero",
        "payment",
        "create",
        re.compile(
            r"Payments can only be made against Authorised documents"
            r"|Payment amount exceeds the amount outstanding on this document"
        ),
        Doc(_XERO, "Payments can only be made against Authorised documents"),
    ),
    Refusal(
        "ascora: a Draft or Void invoice takes no payments, none beyond its balance",
        "ascora",
        "payment",
        "create",
        re.compile(r"\(code (invoice_not_payable|overpayment)\)"),
        Doc(_ASCORA, "422 `invoice_not_payable`"),
    ),
    Refusal(
        "stripe: a paid invoice is neither deleted nor voided",
        "stripe",
        "invoice",
        "delete",
        re.compile(r"^Stripe invoice \S+ is paid: Stripe cannot delete or void it$"),
        Doc(_STRIPE, "a paid invoice is Stripe's rule (`ProviderRuleError`"),
    ),
    Refusal(
        "xero: an invoice with payments is not voided",
        "xero",
        "invoice",
        "delete",
        re.compile(r"Xero cannot void a \w+ invoice: remove its payments first$"),
        Doc(_XERO, "Xero cannot void a PAID invoice: remove its payments first"),
    ),
    Refusal(
        "ascora: an invoice with payments is not voided",
        "ascora",
        "invoice",
        "delete",
        re.compile(r"\(code invoice_has_payments\)"),
        Doc(_ASCORA, "422 `invoice_has_payments`"),
    ),
    Refusal(
        "ascora: a void invoice is final",
        "ascora",
        "invoice",
        "update",
        re.compile(r"\(code invoice_void\)"),
        Doc(_ASCORA, '422 `invoice_void`: "a void invoice cannot change"'),
    ),
    Refusal(
        "square: a paid, canceled, refunded or failed invoice is final",
        "square",
        "invoice",
        "update",
        re.compile(
            r"^Square invoice \S+: .*a (PAID|CANCELED|REFUNDED|FAILED) invoice cannot be edited"
        ),
        Doc(_SQUARE, "A PAID, CANCELED, REFUNDED or FAILED invoice takes no update"),
    ),
    Refusal(
        "square: a completed payment is final",
        "square",
        "payment",
        "update",
        re.compile(r"^Square payment \S+: a completed payment cannot change"),
        Doc(_SQUARE, "A completed payment is final"),
    ),
    Refusal(
        "shopify: a transaction is never edited",
        "shopify",
        "payment",
        "update",
        re.compile(r"^Shopify transaction \S+: transactions are created, never edited"),
        Doc(_SHOPIFY, "transactions are created, never edited; a change to one's"),
    ),
    Refusal(
        "shopify: no payment over what the order owes",
        "shopify",
        "payment",
        "create",
        re.compile(r"^Shopify order \S+ owes \S+: a payment of \S+ exceeds its outstanding"),
        Doc(_SHOPIFY, "Shopify refuses a sale over the order's outstanding balance"),
    ),
    Refusal(
        "myob: no payment over the invoice's balance due",
        "myob",
        "payment",
        "create",
        re.compile(r"^MYOB invoice \S+: a payment cannot exceed its balance due"),
        Doc(_MYOB, "A payment cannot exceed its invoice's balance due"),
    ),
    Refusal(
        "myob: no void sale invoices",
        "myob",
        "invoice",
        "update",
        re.compile(r"^MYOB invoice \S+: MYOB has no void invoices"),
        Doc(_MYOB, "a change to void is a `provider_rule` dead letter"),
    ),
    Refusal(
        "myob: a customer payment is never edited",
        "myob",
        "payment",
        "update",
        re.compile(r"^MYOB payment \S+: a customer payment cannot be edited"),
        Doc(_MYOB, "`Sale/CustomerPayment` has no `PUT`: a change to what MYOB holds of a payment"),
    ),
    Refusal(
        "myob: an invoice with payments applied is not deleted",
        "myob",
        "invoice",
        "delete",
        re.compile(r"^MYOB invoice \S+: .*\(TransactionHasPayments\)"),
        Doc(_MYOB, "An invoice with payments applied cannot be deleted (MYOB's 400"),
    ),
    Refusal(
        "shopify: an order that took money is not deleted",
        "shopify",
        "invoice",
        "delete",
        re.compile(r"^Shopify order \S+ is \w+: an order that took money is not deleted$"),
        Doc(_SHOPIFY, "Deleting an order that took money"),
    ),
    Refusal(
        "paypal: a paid, partly paid or cancelled invoice takes no edit",
        "paypal",
        "invoice",
        "update",
        re.compile(r"^PayPal invoice \S+: a \w+ invoice cannot be edited \("),
        Doc(_PAYPAL, "Paid, partly paid and cancelled invoices take no edit"),
    ),
    Refusal(
        "paypal: a sent invoice cannot return to draft",
        "paypal",
        "invoice",
        "update",
        re.compile(r"^PayPal invoice \S+: .*a \w+ invoice cannot return to draft"),
        Doc(_PAYPAL, "a sent one cannot return to draft (`provider_rule`)"),
    ),
    Refusal(
        "paypal: a payment only on a sent invoice, up to its amount due",
        "paypal",
        "payment",
        "create",
        re.compile(
            r"^PayPal invoice \S+ takes no such payment: "
            r".*(INVALID_PAYMENT_AMOUNT|INVALID_INVOICE_STATUS)"
        ),
        Doc(_PAYPAL, "A payment over the invoice's amount due, or on an invoice"),
    ),
    Refusal(
        "paypal: a payment is never edited",
        "paypal",
        "payment",
        "update",
        re.compile(r"^PayPal payment \S+: a payment cannot be edited, only deleted and recorded"),
        Doc(_PAYPAL, "Neither kind can be edited: a change to what PayPal holds (amount, method,"),
    ),
)


def refusal(provider: str, kind: str, detail: str) -> Refusal | None:
    """The rule a ``provider_rule`` dead letter follows, or None: not one we accept."""
    for rule in REFUSALS:
        if rule.provider == provider and rule.kind == kind and rule.detail.search(detail):
            return rule
    return None


def not_updatable(provider: str, kind: Kind) -> str | None:
    """The capability rule by which ``provider`` keeps a ``kind`` as it was given (its
    ``update`` cell is ✗), named with its reason; None when it takes updates."""
    row = CAPABILITIES.get(provider, {}).get(kind)
    if row is None or row.update.support != "no":
        return None
    return f"{provider}: {kind} update ✗ ({row.update.why})"


# Providers that keep an approved invoice on the books when it is deleted here: they void
# it (cancel, at Square), and it reads back with status void. The words are their
# capabilities' ``delete`` cell (kept true by tests/unit/test_convergence_rules.py).
VOIDS_INVOICES: dict[str, str] = {
    "stripe": "open invoices voided",
    "xero": "approved invoices VOIDED",
    "ascora": "voided (status Void), never deleted",
    "square": "published invoices canceled",
    "paypal": "sent invoices cancelled",
}


def voided(provider: str, kind: Kind, remote: Mapping[str, Any]) -> str | None:
    """The rule by which ``provider`` holds a deleted ``kind`` as void, when it does."""
    words = VOIDS_INVOICES.get(provider)
    if kind != "invoice" or words is None or remote.get("status") != "void":
        return None
    return f"{provider}: invoice delete ({words})"


def not_deletable(provider: str, kind: Kind) -> str | None:
    """The capability rule by which ``provider`` keeps a deleted ``kind`` (``delete`` ✗)."""
    row = CAPABILITIES.get(provider, {}).get(kind)
    if row is None or row.delete.support != "no":
        return None
    return f"{provider}: {kind} delete ✗ ({row.delete.why})"


def held_back(provider: str, kind: Kind, data: Mapping[str, Any]) -> str | None:
    """Why ``provider`` does not hold a record with canonical ``data`` yet
    (``ApiSpec.holds_back``), named; None when it does."""
    api = connector(provider).api
    why = api.holds_back(kind, data) if api is not None and api.holds_back else None
    return f"{provider}: held back ({why})" if why else None


def recipient_only(provider: str, kind: Kind) -> str | None:
    """The capability rule by which ``provider`` holds a ``kind`` only inside the records
    that carry it (plan.INSIDE: a PayPal customer is the recipient of its invoices), so it
    does not hold one that no record it holds carries; named with its ``create`` reason."""
    row = CAPABILITIES.get(provider, {}).get(kind)
    if row is None or kind not in INSIDE.get(provider, frozenset()):
        return None
    return f"{provider}: {kind} held as invoice recipients ({row.create.why})"
