"""Derived amounts (issue 17 item 6): an invoice's ``amount_due`` and ``status`` follow its
payments. Pure functions of their inputs; :func:`services.processor.apply.derive_invoices`
loads what they need and writes what they say, in the transaction of the payments.

A committed payment change that can move what is due (created, deleted, or its amount,
currency, status or invoice changed) names its invoice, before and after. Once a batch is
applied, each such invoice is derived again from all its live payments:

- ``amount_due`` = ``total`` minus the sum of its live ``succeeded`` payments in the
  invoice's currency (no exchange rate is guessed: a payment in another currency does not
  count), never below 0;
- ``status``: ``open``/``overdue`` becomes ``paid`` when nothing is due; ``paid`` becomes
  ``open`` when something is due again (a payment deleted, refunded or failed). ``draft``
  keeps its status; a ``void`` invoice is left alone entirely.

The derived values carry the provenance source :data:`DERIVED_SOURCE`, timestamped with the
newest source timestamp of the payment changes that moved them. They compete with a
provider's own ``amount_due`` (Xero's ``AmountDue``, QuickBooks' ``Balance``, Stripe's
``amount_remaining``, Ascora's ``balanceDue``) as any two sources do, newest wins:

- a provider's figure stated **after** the newest payment we derived from stands, and the
  derivation leaves the invoice alone: that system has seen the payment and knows what the
  canonical model does not hold (credit notes, overpayments and prepayments allocated,
  write-offs, the customer balance Stripe adds);
- a provider's figure stated **before** it (or at the same second) gives way: it has not
  (or may not have) seen the payment yet, and the derivation has;
- a derived value always gives way to a newer derivation, whatever its timestamp: each is
  computed from every payment known at the time.

Only a payment change derives, never an invoice change, so a provider reporting its own
figure cannot start a loop: the figure is merged like any field, and when it agrees with the
derived one nothing changes (decide's rule 10: no version, no outbox row).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.processor.decide import Decision, InboundChange, Record, Write
from services.processor.merge import FieldMeta, RecordState

# The field_meta source of a value derived here (connection ids otherwise; "admin" for an
# operator's choice, crmsync.application.conflicts.ADMIN_SOURCE).
DERIVED_SOURCE = "derived"

# The payment fields that decide what an invoice has been paid.
_PAYMENT_FIELDS = ("invoice_id", "amount", "currency", "status")
_OPEN = frozenset({"open", "overdue"})


def invoices_moved(
    entity_type: str, before: Record | None, decision: Decision
) -> tuple[uuid.UUID, ...]:
    """The invoices whose amount due a decided change may move: a payment created or
    deleted names its invoice; a payment updated names its invoice before and after, if its
    amount, currency, status or invoice changed. Nothing for anything else (which keeps a
    batch without payments free of the derivation's queries)."""
    if entity_type != "payment" or decision.state is None:
        return ()
    after = decision.state.values
    if decision.write is Write.CREATE or decision.write is Write.DELETE:
        named = [after.get("invoice_id")]
    elif decision.write is Write.UPDATE and before is not None:
        old = before.state.values
        if all(old.get(f) == after.get(f) for f in _PAYMENT_FIELDS):
            return ()
        named = [old.get("invoice_id"), after.get("invoice_id")]
    else:
        return ()
    return tuple(sorted({uuid.UUID(str(i)) for i in named if i}))


@dataclass(frozen=True, slots=True)
class Move:
    """Why an invoice is derived again: the payment changes of one batch that named it."""

    ts: datetime  # the newest source timestamp among them
    origins: frozenset[uuid.UUID]  # the connections they came from

    @property
    def origin(self) -> uuid.UUID | None:
        """The derived change's origin: the payments' one connection, which is not pushed
        the invoice (every provider that takes a payment against its own invoice updates
        that invoice itself); None when several connections took part, so each is pushed."""
        return next(iter(self.origins)) if len(self.origins) == 1 else None


def invoice_moves(
    changes: Iterable[tuple[InboundChange, Sequence[uuid.UUID]]],
) -> dict[tuple[uuid.UUID, uuid.UUID], Move]:
    """(tenant, invoice) -> :class:`Move`, from the committed changes and the invoices each
    moved."""
    moves: dict[tuple[uuid.UUID, uuid.UUID], Move] = {}
    for change, invoices in changes:
        for invoice_id in invoices:
            key = (change.tenant_id, invoice_id)
            seen = moves.get(key)
            if seen is None:
                moves[key] = Move(change.source_ts, frozenset({change.connection_id}))
            else:
                moves[key] = Move(
                    max(seen.ts, change.source_ts), seen.origins | {change.connection_id}
                )
    return moves


def amount_paid(invoice: Mapping[str, Any], payments: Iterable[Mapping[str, Any]]) -> int:
    """What the live ``payments`` of ``invoice`` paid of it: succeeded, in its currency."""
    currency = invoice.get("currency")
    return sum(
        p["amount"]
        for p in payments
        if p.get("status") == "succeeded"
        and p.get("currency") == currency
        and isinstance(p.get("amount"), int)
    )


def _may_set(meta: Mapping[str, FieldMeta], name: str, ts: datetime) -> bool:
    held = meta.get(name)
    return held is None or held.source == DERIVED_SOURCE or held.ts <= ts


def _stamp(meta: Mapping[str, FieldMeta], name: str, ts: datetime) -> FieldMeta:
    held = meta.get(name)
    if held is not None and held.source == DERIVED_SOURCE and held.ts > ts:
        ts = held.ts  # a derivation's timestamp never goes back
    return FieldMeta(ts, DERIVED_SOURCE)


def derive(
    invoice: Record, payments: Iterable[Mapping[str, Any]], ts: datetime
) -> RecordState | None:
    """The invoice's state with ``amount_due`` and ``status`` derived from its live
    ``payments`` (their canonical values) as of ``ts``; None when nothing changes."""
    values, meta = invoice.state.values, invoice.state.meta
    total, status = values.get("total"), values.get("status")
    if invoice.deleted or status == "void" or not isinstance(total, int):
        return None
    due = max(0, total - amount_paid(values, payments))
    if values.get("amount_due") != due and not _may_set(meta, "amount_due", ts):
        # A provider stated its own figure after these payments: it stands, and the status
        # that goes with it too.
        return None
    derived: dict[str, Any] = {"amount_due": due}
    if status in _OPEN and due == 0:
        derived["status"] = "paid"
    elif status == "paid" and due > 0:
        derived["status"] = "open"
    new_values, new_meta = dict(values), dict(meta)
    for name, value in derived.items():
        if values.get(name) == value or not _may_set(meta, name, ts):
            continue
        new_values[name] = value
        new_meta[name] = _stamp(meta, name, ts)
    if new_values == values:
        return None
    return RecordState(new_values, new_meta)
