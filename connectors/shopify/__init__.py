"""Shopify: customers and orders; webhooks signed with the app's client secret."""

from connectors.base import Connector
from connectors.capabilities import Capabilities, webhook_only
from connectors.shopify.signature import WEBHOOK_ID_HEADER, ShopifyScheme

# The topic says what the body is (customers/update…), the shop domain which store sent it.
KEPT_HEADERS = ("content-type", "x-shopify-topic", "x-shopify-shop-domain", WEBHOOK_ID_HEADER)

CONNECTOR = Connector(slug="shopify", scheme=ShopifyScheme(), kept_headers=KEPT_HEADERS)

CAPABILITIES: Capabilities = webhook_only(
    "Shopify", alternative="customers and orders would need a mapper and an Admin API client"
)

__all__ = ["CAPABILITIES", "CONNECTOR", "ShopifyScheme"]
