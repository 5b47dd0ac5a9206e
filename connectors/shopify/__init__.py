"""Shopify: customers and orders; webhooks signed with the app's client secret."""

from connectors.base import Connector
from connectors.shopify.signature import WEBHOOK_ID_HEADER, ShopifyScheme

# The topic says what the body is (customers/update…), the shop domain which store sent it.
KEPT_HEADERS = ("content-type", "x-shopify-topic", "x-shopify-shop-domain", WEBHOOK_ID_HEADER)

CONNECTOR = Connector(slug="shopify", scheme=ShopifyScheme(), kept_headers=KEPT_HEADERS)

__all__ = ["CONNECTOR", "ShopifyScheme"]
