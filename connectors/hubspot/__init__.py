"""HubSpot: CRM contacts, companies and deals; thin event batches signed with v3 signatures."""

from connectors.base import Connector
from connectors.hubspot.signature import HubSpotScheme

# Event types live in each array element (subscriptionType); no header beyond the type.
CONNECTOR = Connector(slug="hubspot", scheme=HubSpotScheme(), kept_headers=("content-type",))

__all__ = ["CONNECTOR", "HubSpotScheme"]
