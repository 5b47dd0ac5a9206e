"""MYOB Business (AccountRight): customers, sale invoices and customer payments of one
company file, over OAuth2. MYOB sends no webhooks: its changes are polled."""

from connectors.base import NoWebhooksScheme
from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.myob.client import make_client
from connectors.myob.mapping import Mapper

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__, scheme=NoWebhooksScheme(), mapper=Mapper(), make_client=make_client
)

__all__ = ["CAPABILITIES", "CONNECTOR"]
