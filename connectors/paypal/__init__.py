"""PayPal: Invoicing v2 invoices, captures and recorded payments, invoice recipients as
customers; webhooks signed with a PayPal certificate (SHA256withRSA), verified offline."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.paypal.client import make_client
from connectors.paypal.mapping import Mapper
from connectors.paypal.signature import PayPalScheme
from connectors.spec import pending_payments_wait

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__,
    scheme=PayPalScheme(),
    mapper=Mapper(),
    make_client=make_client,
    # A card payment pending at Stripe is an intermediate state: it waits (issue 17).
    holds_back=pending_payments_wait("PayPal"),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "PayPalScheme"]
