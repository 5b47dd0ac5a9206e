"""Xero: accounting (contacts, invoices, payments); thin webhooks signed with the webhook key."""

from connectors.base import Connector
from connectors.xero.signature import XeroScheme

CONNECTOR = Connector(slug="xero", scheme=XeroScheme(), kept_headers=("content-type",))

__all__ = ["CONNECTOR", "XeroScheme"]
