"""What the HubSpot connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import Capabilities, KindSupport, na, partly, yes

_THIN = yes("HubSpot's webhooks are thin: every item is fetched")
_SEARCH = partly(
    "through the search API: at most 10,000 results a query, and its index lags writes "
    "by a few seconds"
)
_ARCHIVED = yes("archived (HubSpot's recycle bin keeps it 90 days)")

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=_THIN,
        backfill=yes(),
        reconcile=_SEARCH,
        create=partly(
            "a contact whose email HubSpot already holds is refused (409 naming the "
            "existing contact); outbound does not link it, the push is a dead letter"
        ),
        update=yes(),
        delete=_ARCHIVED,
        payment=na(),
    ),
    "job": KindSupport(
        webhook=yes("deals"),
        hydrate=_THIN,
        backfill=yes(),
        reconcile=_SEARCH,
        create=yes(),
        update=yes(),
        delete=_ARCHIVED,
        payment=na(),
    ),
    "invoice": KindSupport.absent("HubSpot has nothing mapped to invoices or payments"),
    "payment": KindSupport.absent("HubSpot has nothing mapped to invoices or payments"),
}
