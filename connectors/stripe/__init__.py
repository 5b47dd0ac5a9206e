"""Stripe: payments, customers and invoices; webhooks signed with ``Stripe-Signature``."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.stripe.client import make_client
from connectors.stripe.mapping import Mapper
from connectors.stripe.signature import StripeScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__, scheme=StripeScheme(), mapper=Mapper(), make_client=make_client
)

__all__ = ["CAPABILITIES", "CONNECTOR", "StripeScheme"]
