"""Xero: accounting (contacts, invoices, payments); thin webhooks signed with the webhook key."""

from connectors.base import Connector
from connectors.spec import ApiSpec, RateLimit
from connectors.xero.capabilities import CAPABILITIES
from connectors.xero.client import make_client
from connectors.xero.mapping import Mapper, holds_back
from connectors.xero.signature import XeroScheme

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
        # An update reads the record first (issue 17): a state we have not heard goes to
        # the merge instead of being overwritten. An invoice update read it anyway (its
        # lifecycle plan) and uses that read (client.LOOK_REUSE_SECONDS): no call more; a
        # contact update costs one GET more (README, "Concurrency").
        update_precondition="read",
        # Xero computes an invoice's totals from its lines and its amount due from its
        # payments (our write sends neither): a payment we pushed moving them is no edit.
        own_fields={"invoice": frozenset({"subtotal", "tax", "total", "amount_due"})},
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "XeroScheme"]
