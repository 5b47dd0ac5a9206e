"""What the Square connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import FULL_WEBHOOK, Capabilities, KindSupport, na, no, partly, yes

_FETCHED = yes(
    "fetched: the event carries neither the order's lines nor the invoice a payment pays"
)

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=yes(),
        reconcile=yes("`SearchCustomers` by `updated_at`"),
        create=yes(),
        update=yes("with the customer's current `version`; re-read once on `VERSION_MISMATCH`"),
        delete=yes(),
        payment=na(),
    ),
    "job": KindSupport.absent("Square has no jobs"),
    "invoice": KindSupport(
        webhook=yes(),
        hydrate=_FETCHED,
        backfill=yes("the invoices of the connection's `square_location_id`, with their orders"),
        reconcile=partly(
            "`ListInvoices` has no updated-at filter: every page is read and older invoices "
            "are left out"
        ),
        create=partly(
            "an order with the lines, then the invoice on it (published when open); a line "
            "tax no percentage reproduces exactly is refused"
        ),
        update=partly(
            "lines change on drafts only; paid and canceled invoices are final; published "
            "cannot return to draft or change its recipient (each a `provider_rule` dead "
            "letter); a published invoice's due date changes"
        ),
        delete=partly("drafts are deleted, published invoices canceled; paid ones refused"),
        payment=yes("a payment pays the invoice's order; Square settles the invoice itself"),
    ),
    "payment": KindSupport(
        webhook=yes(),
        hydrate=_FETCHED,
        backfill=yes(),
        reconcile=yes("`ListPayments` by `updated_at_begin_time`"),
        create=partly(
            "recorded as money received outside Square (`source_id: EXTERNAL`), succeeded only"
        ),
        update=partly(
            "a completed payment is final at Square: a change is a `provider_rule` dead letter"
        ),
        delete=no("Square cannot delete a payment"),
        payment=yes("pays the order of the invoice it names"),
    ),
}
