"""Shopify: customers, orders (as invoices) and their transactions (as payments) over the
REST Admin API; webhooks signed with the app's client secret."""

from connectors.base import Connector
from connectors.shopify.capabilities import CAPABILITIES
from connectors.shopify.client import BUCKET_SIZE, LEAK_PER_SECOND, make_client
from connectors.shopify.mapping import TOPIC_HEADER, TRIGGERED_AT_HEADER, Mapper
from connectors.shopify.signature import WEBHOOK_ID_HEADER, ShopifyScheme
from connectors.spec import ApiSpec, RateLimit, received_payments_only

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

CONNECTOR = Connector(
    slug="shopify",
    scheme=ShopifyScheme(),
    kept_headers=KEPT_HEADERS,
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # A payment made elsewhere is recorded as money received: a pending one waits.
        holds_back=received_payments_only("Shopify"),
        # The REST Admin API's leaky bucket on standard plans: 40 requests, leaking 2 a
        # second (Shopify's "REST Admin API rate limits"); Plus stores may set
        # `rate_limit` to their 400 and 20.
        rate_limit=RateLimit(rate=LEAK_PER_SECOND, per_seconds=1, burst=BUCKET_SIZE),
        auth_kind="bearer",
        make_client=make_client,
        # Each store has its own URL (https://{shop}.myshopify.com): no default.
        default_base_url=None,
        deletable=("customer", "invoice"),
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "ShopifyScheme"]
