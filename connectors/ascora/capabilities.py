"""What the Ascora connector does per record kind (see connectors/capabilities.py).

Ascora publishes no API or webhook specification: this is what the assumed API of
README.md supports.
"""

from __future__ import annotations

from connectors.capabilities import FULL_WEBHOOK, Capabilities, KindSupport, na, no, partly, yes

_LISTED = yes()
_SINCE = yes("`modifiedSince` (inclusive), oldest change first")

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=_LISTED,
        reconcile=_SINCE,
        create=yes(),
        update=yes(),
        delete=yes(),
        payment=na(),
    ),
    "job": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=_LISTED,
        reconcile=_SINCE,
        create=yes(),
        update=yes("a status change goes through the job status endpoint"),
        delete=yes(),
        payment=na(),
    ),
    "invoice": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=_LISTED,
        reconcile=_SINCE,
        create=yes(),
        update=partly(
            "customer and currency are set on create only; paid and overdue are never "
            "written (Ascora derives them from payments and the due date)"
        ),
        delete=partly(
            "voided (status Void), never deleted; Ascora refuses (422) while payments exist"
        ),
        payment=yes(
            "a payment is recorded against the invoice "
            "(`POST /invoices/{id}/payments`); Ascora computes balance and status"
        ),
    ),
    "payment": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=_LISTED,
        reconcile=_SINCE,
        create=yes("recorded against its invoice: needs `refs.invoice_id`"),
        update=no("Ascora payments cannot be edited: delete and record again"),
        delete=yes(),
        payment=yes("recorded against its invoice: needs `refs.invoice_id`"),
    ),
}
