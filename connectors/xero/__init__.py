"""Xero: accounting (contacts, invoices, payments); thin webhooks signed with the webhook key."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.xero.client import make_client
from connectors.xero.mapping import Mapper, holds_back
from connectors.xero.signature import XeroScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__, scheme=XeroScheme(), mapper=Mapper(), make_client=make_client, holds_back=holds_back
)

__all__ = ["CAPABILITIES", "CONNECTOR", "XeroScheme"]
