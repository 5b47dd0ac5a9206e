"""What the MYOB connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import Capabilities, KindSupport, na, no, partly, yes

_NO_WEBHOOKS = no("MYOB sends no webhooks: changes arrive by the modified-since poll")
_POLLED = yes("`$filter=LastModified ge …`, polled every 60 s (README, Polling)")

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=_NO_WEBHOOKS,
        hydrate=na("nothing to hydrate: no webhooks"),
        backfill=yes("inactive cards included, read as deleted"),
        reconcile=_POLLED,
        create=yes("an individual's card (a company's when only `company` is given)"),
        update=yes("the whole card `PUT` at its `RowVersion`; re-read once on 409"),
        delete=yes("made inactive (`IsActive: false`): a card with sales cannot be deleted"),
        payment=na(),
    ),
    "job": KindSupport.absent("MYOB's jobs are cost centres, not work orders"),
    "invoice": KindSupport(
        webhook=_NO_WEBHOOKS,
        hydrate=na("nothing to hydrate: no webhooks"),
        backfill=yes("Item-layout sale invoices (`Sale/Invoice/Item`)"),
        reconcile=_POLLED,
        create=partly(
            "Item layout with the connection's `myob_item_uid`; a line's tax must be its "
            "tax code's rate (or none); MYOB has no drafts, so an invoice there is open"
        ),
        update=partly(
            "the whole invoice `PUT` at its `RowVersion` (re-read once on 409); MYOB has no "
            "void: a change to void is a `provider_rule` dead letter"
        ),
        delete=partly("deleted; MYOB refuses an invoice with payments applied"),
        payment=yes("a customer payment applied to it lowers its balance; MYOB closes it"),
    ),
    "payment": KindSupport(
        webhook=_NO_WEBHOOKS,
        hydrate=na("nothing to hydrate: no webhooks"),
        backfill=yes(),
        reconcile=_POLLED,
        create=partly(
            "succeeded only: MYOB records money received (a customer payment); a pending one"
            " is held back until it succeeds"
        ),
        update=partly(
            "`Sale/CustomerPayment` has no PUT: a change to what MYOB holds of it (amount, "
            "reference) is a `provider_rule` dead letter; delete it and record it again"
        ),
        delete=yes(),
        payment=yes("applied to its invoice (`Invoices[].AmountApplied`)"),
    ),
}
