"""Xero: accounting (contacts, invoices, payments); thin webhooks signed with the webhook key."""

from connectors.base import Connector
from connectors.capabilities import declared
from connectors.spec import ApiSpec, RateLimit
from connectors.xero.client import make_client
from connectors.xero.mapping import Mapper, holds_back
from connectors.xero.signature import XeroScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = Connector(
    slug="xero",
    scheme=XeroScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # Xero's API limits (developer.xero.com/documentation/guides/oauth2/limits): 60 calls
        # a minute and 5,000 a day per tenant, at most 5 in flight. 55 a minute plus a burst
        # of 5 never puts more than 60 calls in any 60-second window; the daily cap is the
        # caller's to pace.
        rate_limit=RateLimit(rate=55, per_seconds=60, burst=5),
        auth_kind="oauth2",
        make_client=make_client,
        # Xero's identity server; 30-minute access tokens, rotating refresh tokens.
        token_url="https://identity.xero.com/connect/token",  # noqa: S106 - a URL, not a secret
        default_base_url="https://api.xero.com",
        deletable=("customer", "invoice", "payment"),
        holds_back=holds_back,
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "XeroScheme"]
