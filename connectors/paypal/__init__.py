"""PayPal: Invoicing v2 invoices, captures and recorded payments, invoice recipients as
customers; webhooks signed with a PayPal certificate (SHA256withRSA), verified offline."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.paypal.client import make_client
from connectors.paypal.mapping import Mapper
from connectors.paypal.signature import PayPalScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__, scheme=PayPalScheme(), mapper=Mapper(), make_client=make_client
)

__all__ = ["CAPABILITIES", "CONNECTOR", "PayPalScheme"]
