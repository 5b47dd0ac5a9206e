"""Standard Webhooks (standardwebhooks.com, Svix): any sender that follows the specification."""

from connectors.base import Connector
from connectors.capabilities import Capabilities, webhook_only
from connectors.standard_webhooks.signature import StandardWebhooksScheme

# webhook-id and webhook-timestamp travel with the envelope so the processor can order and
# trace deliveries; webhook-signature is never kept.
KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp")

CONNECTOR = Connector(
    slug="standard-webhooks", scheme=StandardWebhooksScheme(), kept_headers=KEPT_HEADERS
)

# A signature scheme only: bodies differ per sender, so there is nothing to map them by.
CAPABILITIES: Capabilities = webhook_only(
    "Standard Webhooks",
    alternative="a sender's bodies are mapped by a `generic` connection or its own connector",
)

__all__ = ["CAPABILITIES", "CONNECTOR", "KEPT_HEADERS", "StandardWebhooksScheme"]
