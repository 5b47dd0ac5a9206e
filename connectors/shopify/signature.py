"""Shopify's ``x-shopify-hmac-sha256`` scheme.

Base64 HMAC-SHA256 of the raw body keyed with the app's client secret; no timestamp.
``x-shopify-webhook-id`` is Shopify's dedup key. It is not covered by the signature, so a
replayed body under a new id would pass dedup; the body itself still cannot be forged, and
the processor's conditional upsert makes such a replay a no-op.
"""

from __future__ import annotations

from connectors.base import (
    Base64BodyScheme,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    header_event_id,
    sign_base64_body,
)

HEADER = "x-shopify-hmac-sha256"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"


class ShopifyScheme(Base64BodyScheme):
    """Verify Shopify webhooks; the secret is the app's client secret from Shopify."""

    header = HEADER

    def event_id(self, request: WebhookRequest) -> str:
        event_id = header_event_id(request.headers, WEBHOOK_ID_HEADER) or body_hash_id(request.body)
        return bounded_event_id(event_id)


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The sending side: the signature header Shopify sends ``body`` with."""
    return {HEADER: sign_base64_body(secret, body)}
