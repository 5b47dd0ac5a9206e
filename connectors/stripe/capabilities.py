"""What the Stripe connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import (
    FULL_WEBHOOK,
    Capabilities,
    KindSupport,
    na,
    no,
    partly,
    yes,
)

_EVENTS_TEXT = (
    "Stripe has no modified-since filter: polls read `/v1/events`, kept 30 days; an older "
    "start lists everything"
)
_EVENTS_ONLY = partly(_EVENTS_TEXT)

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=yes(),
        reconcile=_EVENTS_ONLY,
        create=yes(),
        update=yes(),
        delete=yes(),
        payment=na(),
    ),
    "job": KindSupport.absent("Stripe has no jobs"),
    "invoice": KindSupport(
        webhook=yes(),
        hydrate=yes(
            "every invoice event is fetched: Stripe builds an invoice in steps, so a "
            "snapshot may be half-built"
        ),
        backfill=yes(),
        reconcile=partly(
            _EVENTS_TEXT + "; an invoice whose lines do not all fit in its Event keeps its "
            "lines unchanged"
        ),
        create=partly(
            "refused (`totals_mismatch`) when Stripe's line arithmetic cannot reach the "
            "invoice's total (tax-inclusive lines, invoice-level discounts)"
        ),
        update=partly(
            "number, currency, dates and lines change on drafts only; open → draft, "
            "paid → open and void → anything are refused; customer and currency are fixed "
            "at creation (each a `provider_rule` dead letter)"
        ),
        delete=partly("drafts are deleted, open invoices voided; a paid invoice is refused"),
        # Stripe's API from 2025-03-31 takes several payments per invoice (and records
        # out-of-band ones); the client pins 2024-06-20, where `pay` settles the whole.
        payment=partly(
            "a part payment is not applied (on the pinned API version `pay` settles the "
            "whole): the invoice stays open with its full amount until the canonical status "
            "is paid, pushed as `pay` `paid_out_of_band`"
        ),
    ),
    "payment": KindSupport(
        webhook=yes("`payment_intent.*` and `charge.refunded`"),
        hydrate=na(FULL_WEBHOOK),
        backfill=yes(),
        reconcile=_EVENTS_ONLY,
        create=partly(
            "an unconfirmed PaymentIntent: status and paid time are not pushed (a payment "
            "succeeds at Stripe by being charged)"
        ),
        update=partly("amount and currency are fixed once it succeeded or was canceled"),
        delete=no("Stripe cannot delete a payment"),
        payment=partly(
            "the invoice is named in `metadata[crmsync_invoice_id]` only: a PaymentIntent "
            "does not settle the invoice's balance"
        ),
    ),
}
