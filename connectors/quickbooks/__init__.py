"""QuickBooks Online: accounting; thin webhooks signed with the verifier token."""

from connectors.base import Connector
from connectors.capabilities import declared
from connectors.quickbooks.client import make_client
from connectors.quickbooks.mapping import Mapper, holds_back
from connectors.quickbooks.signature import QuickBooksScheme
from connectors.spec import ApiSpec, RateLimit

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

API = ApiSpec(
    entity_types=("customer", "invoice", "payment"),
    # Intuit's published throttle: 500 requests per minute per company (realm), and at
    # most 10 concurrent requests per company, which caps the burst.
    rate_limit=RateLimit(rate=500, per_seconds=60, burst=10),
    auth_kind="oauth2",
    make_client=make_client,
    # Intuit's OAuth 2.0 token endpoint (discovery document); access tokens last 1 hour.
    token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",  # noqa: S106 - a URL
    default_base_url="https://quickbooks.api.intuit.com",
    # Customers are "deleted" by making them inactive; invoices and payments are deleted.
    deletable=("customer", "invoice", "payment"),
    holds_back=holds_back,
    # Updates carry the SyncToken outbound read first: a user's edit made since is 5010,
    # handed to the merge instead of overwritten (README, "Concurrent edits").
    update_precondition="version",
)

CONNECTOR = Connector(
    slug="quickbooks",
    scheme=QuickBooksScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=API,
)

__all__ = [
    "API",
    "CAPABILITIES",
    "CONNECTOR",
    "QuickBooksScheme",
]
