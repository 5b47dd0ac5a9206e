"""Standard Webhooks (standardwebhooks.com, Svix): any sender that follows the specification."""

from connectors.base import Connector
from connectors.standard_webhooks.signature import StandardWebhooksScheme

# webhook-id and webhook-timestamp travel with the envelope so the processor can order and
# trace deliveries; webhook-signature is never kept.
KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp")

CONNECTOR = Connector(
    slug="standard-webhooks", scheme=StandardWebhooksScheme(), kept_headers=KEPT_HEADERS
)

__all__ = ["CONNECTOR", "KEPT_HEADERS", "StandardWebhooksScheme"]
