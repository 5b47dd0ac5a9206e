"""What a Xero sales invoice in its current state can still take: a pure decision.

Xero's rules (developer.xero.com/documentation/api/accounting/invoices, and the answers
its API gives; connectors/xero/README.md lists them):

- DRAFT and SUBMITTED invoices take any edit; one that is voided is deleted instead
  (Xero voids only approved invoices).
- An AUTHORISED invoice without payments takes edits and can be voided, but never
  returns to DRAFT or SUBMITTED ("An approved invoice cannot return to draft").
- An invoice with a payment or credit note allocated (AmountPaid > 0, or PAID) takes no
  edit at all: "This document cannot be edited as it has a payment or credit note
  allocated to it." It cannot be voided until its payments are removed. PAID is Xero's
  own status, set when payments cover the total: our "paid" is pushed as payments.
- VOIDED and DELETED invoices are final.

``plan_update`` compares what we want with what Xero holds, in canonical terms, and
returns the fields to send (only the changed ones: an unchanged invoice costs no write)
and, separately, what Xero would refuse, each with the rule's words.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from connectors.spec import RemoteRecord
from schemas.records import Invoice, InvoiceLine

# The canonical fields a push may change on a Xero invoice (the mapper sends these; the
# totals follow from the lines, Xero computes them).
EDITABLE_FIELDS = ("number", "currency", "issued_on", "due_on", "lines")
# Xero's invoice states, by what they allow.
OPEN_TO_EDITS = frozenset({"DRAFT", "SUBMITTED"})
FINAL = frozenset({"VOIDED", "DELETED"})
# Canonical statuses as Xero states them when pushed (mapping.INVOICE_STATUS_OUT, but a
# canonical "paid" is a payment's doing, never a status we send).
_WANTED_STATUS = {
    "draft": "DRAFT",
    "open": "AUTHORISED",
    "overdue": "AUTHORISED",
    "paid": "AUTHORISED",
    "void": "VOIDED",
}

PAYMENT_ALLOCATED = (
    "This document cannot be edited as it has a payment or credit note allocated to it"
)


@dataclass(frozen=True)
class Plan:
    """``send``: the canonical fields to send and ``status`` the Xero status to move to
    (both None: no write); ``refused``: what Xero would not take, in its words."""

    send: dict[str, Any] | None
    status: str | None = None
    refused: tuple[str, ...] = field(default=())

    @property
    def writes(self) -> bool:
        return self.send is not None or self.status is not None


def _line_key(line: InvoiceLine) -> tuple[str, Decimal, int, int]:
    return (line.description or "", line.quantity.normalize(), line.unit_amount, line.tax_amount)


def _same(name: str, wanted: Invoice, current: Invoice) -> bool:
    if name == "lines":
        have = current.lines or ()
        return [_line_key(x) for x in wanted.lines or ()] == [_line_key(x) for x in have]
    if name == "currency" and wanted.currency and current.currency:
        return wanted.currency.upper() == current.currency.upper()
    return bool(getattr(wanted, name) == getattr(current, name))


def changed_fields(
    wanted: Mapping[str, Any],
    wanted_refs: Mapping[str, str],
    current: RemoteRecord,
) -> list[str]:
    """The canonical fields of ``wanted`` that differ from the invoice Xero holds
    (``customer_id`` when the contact would change)."""
    want = Invoice.model_validate(dict(wanted))
    have = Invoice.model_validate(current.data)
    changed = [
        name
        for name in EDITABLE_FIELDS
        if name in want.model_fields_set
        and getattr(want, name) is not None
        and not _same(name, want, have)
    ]
    contact = wanted_refs.get("customer_id")
    if contact is not None and contact != current.refs.get("customer_id"):
        changed.append("customer_id")
    return changed


def plan_update(
    status: str,
    amount_paid: Decimal,
    current: RemoteRecord,
    wanted: Mapping[str, Any],
    wanted_refs: Mapping[str, str],
) -> Plan:
    """What to send to a Xero invoice now ``status`` (Xero's) with ``amount_paid``
    allocated, as ``current`` (canonical), to make it ``wanted``."""
    changed = changed_fields(wanted, wanted_refs, current)
    target = _WANTED_STATUS.get(str(wanted.get("status"))) if wanted.get("status") else None
    number = current.data.get("number") or current.external_id
    refused: list[str] = []
    if status in FINAL:
        if changed or target not in (None, "VOIDED"):
            moved = ", ".join(changed) or f"status to {target}"
            refused.append(f"invoice {number} is {status} in Xero, which is final: {moved}")
        return Plan(None, refused=tuple(refused))
    if amount_paid > 0 or status == "PAID":
        if changed:
            refused.append(f"{PAYMENT_ALLOCATED} (invoice {number}: {', '.join(changed)})")
        if target == "VOIDED":
            refused.append(
                f"invoice {number} has payments allocated: Xero voids it only after they are"
                " removed"
            )
        elif target == "DRAFT":
            refused.append(f"invoice {number} is approved in Xero: it cannot return to draft")
        return Plan(None, refused=tuple(refused))
    send_status: str | None = None
    if target is not None and target != status:
        if status == "AUTHORISED" and target == "DRAFT":
            refused.append(f"invoice {number} is approved in Xero: it cannot return to draft")
        elif status in OPEN_TO_EDITS and target == "VOIDED":
            send_status = "DELETED"  # Xero voids only approved invoices; a draft is deleted
        elif not (status == "SUBMITTED" and target == "DRAFT"):
            send_status = target
    if not changed:
        return Plan(None, send_status, tuple(refused))
    send = {name: wanted[name] for name in changed if name != "customer_id"}
    # Line amounts are in the invoice's currency: the mapper needs it to spell them.
    if "lines" in send and "currency" in wanted:
        send["currency"] = wanted["currency"]
    return Plan(send, send_status, tuple(refused))
