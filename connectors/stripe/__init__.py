"""Stripe: payments, customers and invoices; webhooks signed with ``Stripe-Signature``."""

from connectors.base import Connector
from connectors.capabilities import declared
from connectors.spec import ApiSpec, RateLimit
from connectors.stripe.client import make_client
from connectors.stripe.mapping import Mapper
from connectors.stripe.signature import StripeScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

# Stripe's event type is in the body; nothing beyond the content type is worth keeping.
CONNECTOR = Connector(
    slug="stripe",
    scheme=StripeScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # Stripe's published limit: 100 read/write operations per second in live mode (25 in
        # test mode), per its "Rate limits" docs and PROVIDERS.md. The live figure is used.
        rate_limit=RateLimit(rate=100, per_seconds=1, burst=100),
        auth_kind="bearer",
        make_client=make_client,
        default_base_url="https://api.stripe.com",
        # Customers are deleted, invoices deleted as drafts or voided; payments cannot be.
        deletable=("customer", "invoice"),
        # Every Stripe timestamp (an Event's or an object's ``created``) is a whole second.
        clock_resolution_seconds=1.0,
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "StripeScheme"]
