"""What the PayPal connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import Capabilities, KindSupport, na, no, partly, yes

_FROM_INVOICES = (
    "listed from the invoices: Invoicing v2 has no updated-at filter, so every page is read"
)

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=partly(
            "PayPal has no customer events: a customer arrives as the recipient of an invoice event"
        ),
        hydrate=na("the invoice event carries the recipient's billing info"),
        backfill=yes("the recipients of the invoices, keyed by e-mail"),
        reconcile=partly(_FROM_INVOICES),
        create=partly(
            "PayPal has no customer API: a customer is written as the recipient of the "
            "invoices that name it (its e-mail; the rest is not sent)"
        ),
        update=partly("the e-mail is its identity: a changed e-mail is refused (`provider_rule`)"),
        delete=no("PayPal has no customer API"),
        payment=na(),
    ),
    "job": KindSupport.absent("PayPal has no jobs"),
    "invoice": KindSupport(
        webhook=yes("`INVOICING.INVOICE.*`"),
        hydrate=yes(
            "every invoice event is fetched: PayPal creates an invoice as a draft and sends "
            "it in a second call, so the creation's event carries the draft"
        ),
        backfill=yes(),
        reconcile=partly(_FROM_INVOICES),
        create=partly(
            "created as a draft, then sent without e-mail when open; a line tax no percent "
            "reproduces exactly is refused"
        ),
        update=partly(
            "paid and cancelled invoices are final; a sent invoice cannot return to draft "
            "(each a `provider_rule` dead letter)"
        ),
        delete=partly("drafts are deleted, sent invoices cancelled; paid ones refused"),
        payment=yes("payments are recorded on the invoice; PayPal sets PAID itself"),
    ),
    "payment": KindSupport(
        webhook=partly(
            "captures by `PAYMENT.CAPTURE.*` (a refund read as its capture, REFUNDED); "
            "recorded payments come with their invoice's event, and their removal only by "
            "a full reconciliation"
        ),
        hydrate=yes("captures are fetched, to find the invoice that lists them"),
        backfill=partly(
            "the invoices' transactions: a capture no invoice lists is not found (PayPal has "
            "no list of captures outside the Transaction Search API, not used)"
        ),
        reconcile=partly(_FROM_INVOICES),
        create=partly("recorded on its invoice as money received outside PayPal; succeeded only"),
        update=partly(
            "PayPal payments cannot be edited, only deleted and recorded again: a change to "
            "what PayPal holds of one is a `provider_rule` dead letter"
        ),
        delete=partly("recorded payments are removed; captures are refunded at PayPal, not here"),
        payment=yes("recorded on the invoice it names"),
    ),
}
