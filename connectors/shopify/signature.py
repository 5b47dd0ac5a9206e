"""Shopify's ``x-shopify-hmac-sha256`` scheme.

Base64 HMAC-SHA256 of the raw body keyed with the app's client secret; no timestamp.
``x-shopify-webhook-id`` is Shopify's dedup key. It is not covered by the signature, so a
replayed body under a new id would pass dedup; the body itself still cannot be forged, and
the processor's conditional upsert makes such a replay a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from secrets import token_urlsafe

from connectors.base import (
    Verified,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    header_event_id,
    match_base64_body_signature,
    sign_base64_body,
)

HEADER = "x-shopify-hmac-sha256"
WEBHOOK_ID_HEADER = "x-shopify-webhook-id"
# Shopify issues the app secret; this only serves tests and simulators (32 bytes).
_SECRET_BYTES = 32


class ShopifyScheme:
    """Verify Shopify webhooks; the secret is the app's client secret from Shopify."""

    issues_own_secret = True

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        index = match_base64_body_signature(request, secrets, HEADER)
        event_id = header_event_id(request.headers, WEBHOOK_ID_HEADER) or body_hash_id(request.body)
        return Verified(secret_index=index, provider_event_id=bounded_event_id(event_id))

    def generate_secret(self) -> str:
        return token_urlsafe(_SECRET_BYTES)


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The sending side: the signature header Shopify sends ``body`` with."""
    return {HEADER: sign_base64_body(secret, body)}
