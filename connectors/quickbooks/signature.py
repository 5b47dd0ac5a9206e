"""QuickBooks Online (Intuit) ``intuit-signature`` scheme.

Base64 HMAC-SHA256 of the raw body keyed with the app's verifier token; no timestamp. The
payload has no delivery id (``eventNotifications`` or CloudEvents arrays of entity
pointers), so the body hash is the dedup key.
"""

from __future__ import annotations

from connectors.base import Base64BodyScheme, sign_base64_body

HEADER = "intuit-signature"


class QuickBooksScheme(Base64BodyScheme):
    """Verify QuickBooks Online webhooks; the verifier token comes from Intuit's portal."""

    header = HEADER


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The sending side: the header Intuit sends ``body`` with."""
    return {HEADER: sign_base64_body(secret, body)}
