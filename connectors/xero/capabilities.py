"""What the Xero connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import Capabilities, KindSupport, na, no, partly, yes

_THIN = yes("Xero's webhooks are thin: every item is fetched")
_SINCE = yes("`If-Modified-Since`, oldest change first")
_NO_PAYMENT_EVENTS = no(
    "Xero sends no payment events (a payment shows as its invoice's UPDATE): payments "
    "arrive by the reconcile poll"
)

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=_THIN,
        backfill=yes("archived contacts included, read as deleted"),
        reconcile=_SINCE,
        create=yes(),
        update=yes(),
        delete=yes("archived (`ContactStatus: ARCHIVED`): Xero deletes no contact"),
        payment=na(),
    ),
    "job": KindSupport.absent("Xero has no jobs"),
    "invoice": KindSupport(
        webhook=yes(),
        hydrate=_THIN,
        backfill=yes("sales invoices (`ACCREC`) only"),
        reconcile=_SINCE,
        create=yes(),
        update=partly(
            "Xero's invoice lifecycle: an approved invoice cannot return to draft; with a "
            "payment or credit note allocated nothing can be edited; VOIDED and DELETED are "
            "final (each a `provider_rule` dead letter, the rest is still sent)"
        ),
        delete=partly(
            "drafts are DELETED, approved invoices VOIDED; Xero refuses an invoice with "
            "payments allocated (remove its payments first)"
        ),
        payment=yes(
            "pushed as a Payment against `Invoice.InvoiceID` into "
            "`xero_payment_account_code`; Xero sets PAID itself"
        ),
    ),
    "payment": KindSupport(
        webhook=_NO_PAYMENT_EVENTS,
        hydrate=_NO_PAYMENT_EVENTS,
        backfill=yes("received payments (`ACCRECPAYMENT`) only"),
        reconcile=_SINCE,
        create=partly(
            "only succeeded payments (Xero records money received; pending, failed and "
            "refunded are a mapping error); needs `xero_payment_account_code`"
        ),
        update=no("Xero payments cannot be edited, only deleted and re-created"),
        delete=yes("`Status: DELETED`"),
        payment=yes("applied to its invoice (`Invoice.InvoiceID`)"),
    ),
}
