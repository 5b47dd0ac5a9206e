"""Stripe's ``Stripe-Signature`` scheme.

Header ``t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]``: each ``v1`` is hex HMAC-SHA256 of
``"{t}.{raw body}"`` keyed with the whole ``whsec_…`` string as UTF-8. While Stripe rolls an
endpoint secret it sends one ``v1`` per live secret, so any ``v1`` matching any of our
secrets passes. ``v0`` (test-mode legacy) and unknown schemes are ignored, as Stripe's own
libraries do.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Sequence
from secrets import choice

from connectors.base import (
    SignatureError,
    Verified,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    check_tolerance,
    decode_hex,
    first_matching_secret,
    json_path_id,
    parse_timestamp,
    require_header,
    secret_keys,
)

HEADER = "stripe-signature"
# Stripe's documented default tolerance (DEFAULT_TOLERANCE in its official libraries).
TOLERANCE_SECONDS = 300
# Dashboard secrets look like whsec_ followed by 32 alphanumerics.
_WHSEC_PREFIX = "whsec_"
_SECRET_ALPHABET = string.ascii_letters + string.digits
_SECRET_LENGTH = 32


class StripeScheme:
    """Verify Stripe webhooks; the secret is issued by Stripe per endpoint."""

    issues_own_secret = True

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        keys = secret_keys(secrets)
        timestamp_text, signatures = _parse_header(require_header(request.headers, HEADER))
        timestamp = parse_timestamp(timestamp_text, HEADER)
        signed = f"{timestamp}.".encode() + request.body
        index = first_matching_secret(keys, [signed], signatures)
        if index is None:
            raise SignatureError("bad_signature", "no v1 signature matches")
        # Checked after the signature so "stale_timestamp" counts authentic replays only.
        check_tolerance(timestamp, now, TOLERANCE_SECONDS, HEADER)
        event_id = json_path_id(request.body, "id") or body_hash_id(request.body)
        return Verified(secret_index=index, provider_event_id=bounded_event_id(event_id))

    def generate_secret(self) -> str:
        body = "".join(choice(_SECRET_ALPHABET) for _ in range(_SECRET_LENGTH))
        return _WHSEC_PREFIX + body


def _parse_header(value: str) -> tuple[str, list[bytes]]:
    timestamp: str | None = None
    signatures: list[bytes] = []
    for item in value.split(","):
        key, sep, field = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = field
        elif key == "v1" and (decoded := decode_hex(field)) is not None:
            signatures.append(decoded)
    if timestamp is None or not signatures:
        raise SignatureError("malformed_header", f"{HEADER} lacks t= or a hex v1= signature")
    return timestamp, signatures


def sign(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The sending side: the header Stripe sends ``body`` with at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {HEADER: f"t={timestamp},v1={digest.hexdigest()}"}
