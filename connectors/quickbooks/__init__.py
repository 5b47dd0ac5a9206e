"""QuickBooks Online: accounting; thin webhooks signed with the verifier token."""

from connectors.base import Connector
from connectors.quickbooks.signature import QuickBooksScheme

CONNECTOR = Connector(slug="quickbooks", scheme=QuickBooksScheme(), kept_headers=("content-type",))

__all__ = ["CONNECTOR", "QuickBooksScheme"]
