"""Ascora: the seed field-service CRM (customers, jobs, invoices); Standard Webhooks signing.

Ascora publishes no API specification: the API shape the client and simulator speak is
the one assumed in connectors/ascora/README.md, to be checked against a real instance.
"""

from connectors.ascora.client import make_client
from connectors.ascora.mapping import Mapper, holds_back
from connectors.ascora.signature import AscoraScheme
from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.standard_webhooks import KEPT_HEADERS

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__,
    scheme=AscoraScheme(),
    mapper=Mapper(),
    kept_headers=KEPT_HEADERS,
    make_client=make_client,
    holds_back=holds_back,
)

__all__ = ["CAPABILITIES", "CONNECTOR", "AscoraScheme", "Mapper", "make_client"]
