"""What "converged" means for the demo: per system, per kind of record it holds, each
record read back through its connector's mapping holds the canonical values.

Pure: the caller reads Postgres and the simulators; this compares. A difference a provider
cannot avoid (its rules leave no way to hold the canonical value) is not hidden and not a
failure for ever: it is a documented *exception*, reported with the rule it follows. Only
the rules below are exceptions; anything else that differs is a difference.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from connectors.spec import EntityType, RemoteRecord

# The kinds in the order they depend on each other (a job names its customer, …).
KINDS: tuple[EntityType, ...] = ("customer", "job", "invoice", "payment")
# What convergence compares, per kind. A reference field (``*_id``) is compared only where
# the system holds the kind it names: Xero and Stripe hold no jobs, so no invoice.job_id.
FIELDS: dict[EntityType, tuple[str, ...]] = {
    "customer": ("name", "email", "phone"),
    "job": ("customer_id", "title", "description", "status"),
    "invoice": (
        "customer_id",
        "job_id",
        "number",
        "status",
        "currency",
        "lines",
        "subtotal",
        "tax",
        "total",
        "amount_due",
    ),
    "payment": ("invoice_id", "amount", "currency", "status"),
}
REFERENCES: dict[str, EntityType] = {
    "customer_id": "customer",
    "job_id": "job",
    "invoice_id": "invoice",
}


@dataclass(frozen=True)
class ProviderRule:
    """A difference a provider's own rules make unavoidable, and where that is written."""

    rule: str
    doc: str


# Stripe: connectors/stripe/README.md, "Payment" and "Part payments".
STRIPE_UNCONFIRMED = ProviderRule(
    "Stripe holds a payment made elsewhere as an unconfirmed PaymentIntent (status and "
    "paid_at are Stripe's own: a payment succeeds there only by being charged)",
    "connectors/stripe/README.md (Payment)",
)
STRIPE_PART_PAID = ProviderRule(
    "Stripe's invoice has no part payment: it stays open with its whole amount remaining "
    "until the rest is paid",
    "connectors/stripe/README.md (Part payments)",
)

# PayPal: connectors/paypal/README.md, "What PayPal holds" (Customers).
PAYPAL_RECIPIENT = ProviderRule(
    "PayPal holds a customer only as the recipient of its invoices: the e-mail they address "
    "and what their billing info carries, never a phone",
    "connectors/paypal/README.md (What PayPal holds: Customers)",
)

# QuickBooks: connectors/quickbooks/README.md, "Invoice" (lines[].tax_amount).
QUICKBOOKS_LINE_TAX = ProviderRule(
    "QuickBooks keeps tax per transaction, not per line: its lines read with no tax "
    "(the invoice's tax and total are compared, and agree)",
    "connectors/quickbooks/README.md (Invoice: lines[].tax_amount)",
)


@dataclass
class Seen:
    """One system's records of one kind, mapped to canonical terms, with the canonical id
    each is linked to (None: not linked) and its references resolved to canonical ids."""

    record: RemoteRecord
    entity_id: uuid.UUID | None
    refs: dict[str, uuid.UUID | None] = field(default_factory=dict)


@dataclass
class Outcome:
    differences: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    # (system, kind) → records compared
    compared: dict[tuple[str, EntityType], int] = field(default_factory=dict)


def normal(name: str, value: Any) -> Any:
    """A value in one form whatever JSON or model it came from: lines as tuples of exact
    numbers (a quantity read as "2", "2.0" or 2 is the same quantity)."""
    if name == "lines" and value is not None:
        return tuple(
            (
                line.get("description"),
                Decimal(str(line.get("quantity"))).normalize(),
                int(line.get("unit_amount") or 0),
                int(line.get("tax_amount") or 0),
            )
            for line in value
        )
    if name.endswith("_id") and value is not None:
        return uuid.UUID(str(value))
    return value


def compare_kind(
    system: str,
    kind: EntityType,
    seen: Iterable[Seen],
    canonical: Mapping[uuid.UUID, Mapping[str, Any]],
    *,
    holds: Iterable[EntityType],
    outcome: Outcome,
    sources: Mapping[uuid.UUID, Mapping[str, str]] | None = None,
    expected: Collection[uuid.UUID] | None = None,
) -> None:
    """Compare one system's records of ``kind`` with the canonical ones; every canonical
    record in ``expected`` (None: every one) must be there and hold the same values of
    FIELDS[kind]. ``sources`` names, per canonical record and field, the system whose
    value it holds (its provenance)."""
    held = set(holds)
    fields = [f for f in FIELDS[kind] if f not in REFERENCES or REFERENCES[f] in held]
    found: set[uuid.UUID] = set()
    count = 0
    for item in seen:
        count += 1
        record = item.record
        if item.entity_id is None:
            outcome.differences.append(
                f"{system} {kind} {record.external_id}: not linked to a canonical record"
            )
            continue
        found.add(item.entity_id)
        ours = canonical.get(item.entity_id)
        if ours is None:
            outcome.differences.append(
                f"{system} {kind} {record.external_id}: its canonical record is gone"
            )
            continue
        for name in fields:
            theirs_value = item.refs.get(name) if name in REFERENCES else record.data.get(name)
            theirs, mine = normal(name, theirs_value), normal(name, ours.get(name))
            if theirs == mine:
                continue
            source = (sources or {}).get(item.entity_id, {}).get(name)
            rule = documented(
                system, kind, name, theirs=theirs, ours=mine, record=ours, source=source
            )
            what = f"{system} {kind} {record.external_id} {name}: {theirs!r}, Postgres {mine!r}"
            if rule is None:
                outcome.differences.append(what)
            else:
                # Lines are long; the rule says how they differ.
                short = f"{system} {kind} {record.external_id} {name}" if name == "lines" else what
                outcome.exceptions.append(f"{short} — {rule.rule} [{rule.doc}]")
    missing = set(canonical if expected is None else expected) - found
    if missing:
        outcome.differences.append(f"{system}: {len(missing)} {kind}(s) missing")
    outcome.compared[(system, kind)] = count


def documented(
    system: str,
    kind: EntityType,
    name: str,
    *,
    theirs: Any,
    ours: Any,
    record: Mapping[str, Any],
    source: str | None = None,
) -> ProviderRule | None:
    """The provider rule that explains this difference, if one does; else None. ``source``
    is the system the canonical value came from."""
    if system == "paypal":
        # A field the recipient does not carry (read as None), not one it holds otherwise.
        return PAYPAL_RECIPIENT if kind == "customer" and theirs is None else None
    if system == "quickbooks":
        untaxed = None if ours is None else tuple((d, q, u, 0) for d, q, u, _ in ours)
        return (
            QUICKBOOKS_LINE_TAX
            if kind == "invoice" and name == "lines" and theirs == untaxed
            else None
        )
    if system != "stripe":
        return None
    if (
        kind == "payment"
        and name == "status"
        and theirs == "pending"
        and ours == "succeeded"
        and source != system
    ):
        return STRIPE_UNCONFIRMED
    if (
        kind == "invoice"
        and name == "amount_due"
        and record.get("status") == "open"
        and isinstance(ours, int)
        and theirs == record.get("total")
        and ours < theirs
    ):
        return STRIPE_PART_PAID
    return None
