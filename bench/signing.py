"""Signed webhook requests as Stripe and Standard Webhooks providers send them.

Copied from tests/signing.py (bench never imports tests): ``hmac`` directly, not the
connectors under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def stripe_headers(secret: str, body: bytes, seconds: int) -> dict[str, str]:
    """``Stripe-Signature``: hex HMAC-SHA256 of ``"{t}.{body}"`` keyed with the whole secret."""
    signature = hmac.new(secret.encode(), f"{seconds}.".encode() + body, hashlib.sha256)
    return {"stripe-signature": f"t={seconds},v1={signature.hexdigest()}"}


def standard_webhooks_headers(
    secret: str, body: bytes, seconds: int, event_id: str
) -> dict[str, str]:
    """Standard Webhooks: base64 HMAC-SHA256 of ``"{id}.{t}.{body}"``, key = the secret's
    base64 part after ``whsec_``."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{seconds}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }
