"""Shopify: customers, orders (as invoices) and their transactions (as payments) over the
REST Admin API; webhooks signed with the app's client secret."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.shopify.client import BUCKET_SIZE, LEAK_PER_SECOND, make_client
from connectors.shopify.mapping import TOPIC_HEADER, TRIGGERED_AT_HEADER, Mapper
from connectors.shopify.signature import WEBHOOK_ID_HEADER, ShopifyScheme
from connectors.spec import RateLimit

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

# The topic says what the body is (customers/update…), the shop domain which store sent
# it, the webhook id is the dedup key and the trigger time when the change happened.
KEPT_HEADERS = (
    "content-type",
    TOPIC_HEADER,
    "x-shopify-shop-domain",
    WEBHOOK_ID_HEADER,
    TRIGGERED_AT_HEADER,
    "x-shopify-api-version",
)

CONNECTOR = declared_connector(
    __name__,
    scheme=ShopifyScheme(),
    mapper=Mapper(),
    kept_headers=KEPT_HEADERS,
    make_client=make_client,
    # The REST Admin API's leaky bucket on standard plans: 40 requests, leaking 2 a
    # second (Shopify's "REST Admin API rate limits"), the client's own constants; Plus
    # stores may set `rate_limit` to their 400 and 20.
    rate_limit=RateLimit(rate=LEAK_PER_SECOND, per_seconds=1, burst=BUCKET_SIZE),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "ShopifyScheme"]
