"""Stripe: payments, customers and invoices; webhooks signed with ``Stripe-Signature``."""

from connectors.base import Connector
from connectors.stripe.signature import StripeScheme

# Stripe's event type is in the body; nothing beyond the content type is worth keeping.
CONNECTOR = Connector(slug="stripe", scheme=StripeScheme(), kept_headers=("content-type",))

__all__ = ["CONNECTOR", "StripeScheme"]
