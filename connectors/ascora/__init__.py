"""Ascora: the seed field-service CRM (customers, jobs, invoices); Standard Webhooks signing."""

from connectors.ascora.signature import AscoraScheme
from connectors.base import Connector
from connectors.standard_webhooks import KEPT_HEADERS

CONNECTOR = Connector(slug="ascora", scheme=AscoraScheme(), kept_headers=KEPT_HEADERS)

__all__ = ["CONNECTOR", "AscoraScheme"]
