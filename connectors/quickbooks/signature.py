"""QuickBooks Online (Intuit) ``intuit-signature`` scheme.

Base64 HMAC-SHA256 of the raw body keyed with the app's verifier token; no timestamp. The
payload has no delivery id (``eventNotifications`` or CloudEvents arrays of entity
pointers), so the body hash is the dedup key.
"""

from __future__ import annotations

from collections.abc import Sequence
from secrets import token_urlsafe

from connectors.base import (
    Verified,
    WebhookRequest,
    body_hash_id,
    match_base64_body_signature,
    sign_base64_body,
)

HEADER = "intuit-signature"
# Intuit issues the verifier token; this only serves tests and simulators (32 bytes).
_SECRET_BYTES = 32


class QuickBooksScheme:
    """Verify QuickBooks Online webhooks; the verifier token comes from Intuit's portal."""

    issues_own_secret = True

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        index = match_base64_body_signature(request, secrets, HEADER)
        return Verified(secret_index=index, provider_event_id=body_hash_id(request.body))

    def generate_secret(self) -> str:
        return token_urlsafe(_SECRET_BYTES)


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The sending side: the header Intuit sends ``body`` with."""
    return {HEADER: sign_base64_body(secret, body)}
