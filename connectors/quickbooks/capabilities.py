"""What the QuickBooks Online connector does per record kind (connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import Capabilities, KindSupport, na, partly, yes

_THIN = yes("QuickBooks' webhooks are thin: every item is fetched")
_SINCE = yes("`Metadata.LastUpdatedTime >=`, oldest change first")
_TOKEN = yes("sparse, against the current `SyncToken` (re-read and retried once)")

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=_THIN,
        backfill=yes("inactive customers included, read as deleted"),
        reconcile=_SINCE,
        create=yes(),
        update=_TOKEN,
        delete=yes("made inactive (`Active: false`): QuickBooks deletes no customer"),
        payment=na(),
    ),
    "job": KindSupport.absent("QuickBooks Online has no jobs"),
    "invoice": KindSupport(
        webhook=yes(),
        hydrate=_THIN,
        backfill=yes(),
        reconcile=_SINCE,
        create=yes(),
        update=partly(
            "status is not written: a canonical void does not void the QuickBooks invoice, "
            "and paid follows from Payments"
        ),
        delete=yes("`?operation=delete`"),
        payment=yes("a Payment applied through `Line[].LinkedTxn`"),
    ),
    "payment": KindSupport(
        webhook=yes(),
        hydrate=_THIN,
        backfill=yes(),
        reconcile=_SINCE,
        create=yes(),
        update=_TOKEN,
        delete=yes("`?operation=delete`"),
        payment=yes("applied to its invoice through `Line[].LinkedTxn`"),
    ),
}
