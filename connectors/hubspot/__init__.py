"""HubSpot: CRM contacts, companies and deals; thin event batches signed with v3 signatures.

Contacts sync as customers and deals as jobs (see README.md in this folder).
"""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.hubspot.client import make_client
from connectors.hubspot.mapping import Mapper
from connectors.hubspot.signature import HubSpotScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__, scheme=HubSpotScheme(), mapper=Mapper(), make_client=make_client
)

__all__ = ["CAPABILITIES", "CONNECTOR", "HubSpotScheme", "Mapper"]
