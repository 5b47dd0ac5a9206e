"""The Standard Webhooks scheme (https://www.standardwebhooks.com, also used by Svix).

Headers ``webhook-id``, ``webhook-timestamp`` (unix seconds) and ``webhook-signature``: a
space-separated list of ``v1,<base64>`` entries, one per live secret during a rotation.
Each is base64 HMAC-SHA256 of ``"{id}.{timestamp}.{raw body}"`` keyed with the base64-decoded
part of the secret after ``whsec_`` (a secret given without the prefix is accepted too).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from secrets import token_bytes

from connectors.base import (
    SignatureError,
    Verified,
    WebhookRequest,
    bounded_event_id,
    check_tolerance,
    decode_base64,
    first_matching_secret,
    parse_timestamp,
    require_header,
    secret_keys,
    text_bytes,
)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# The specification's tolerance: five minutes either way (the official libraries' default).
TOLERANCE_SECONDS = 300
_WHSEC_PREFIX = "whsec_"
# The official libraries generate 24 random bytes per secret.
_SECRET_BYTES = 24


class StandardWebhooksScheme:
    """Verify Standard Webhooks; we issue the secret and hand it to the sender."""

    issues_own_secret = False

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        keys = secret_keys(secrets, _secret_key)
        headers = request.headers
        message_id = require_header(headers, ID_HEADER)
        timestamp = parse_timestamp(require_header(headers, TIMESTAMP_HEADER), TIMESTAMP_HEADER)
        signatures = _parse_signatures(require_header(headers, SIGNATURE_HEADER))
        signed = text_bytes(message_id, ID_HEADER) + f".{timestamp}.".encode() + request.body
        index = first_matching_secret(keys, [signed], signatures)
        if index is None:
            raise SignatureError("bad_signature", "no v1 signature matches")
        # Checked after the signature so "stale_timestamp" counts authentic replays only.
        check_tolerance(timestamp, now, TOLERANCE_SECONDS, TIMESTAMP_HEADER)
        # webhook-id is covered by the signature and is the specification's idempotency key.
        return Verified(secret_index=index, provider_event_id=bounded_event_id(message_id))

    def generate_secret(self) -> str:
        return _WHSEC_PREFIX + base64.b64encode(token_bytes(_SECRET_BYTES)).decode("ascii")


def _secret_key(secret: str) -> bytes | None:
    """The HMAC key of a ``whsec_`` secret, or None if it is not base64 (it then never matches)."""
    encoded = secret.removeprefix(_WHSEC_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_signatures(value: str) -> list[bytes]:
    signatures: list[bytes] = []
    for entry in value.split():
        version, sep, signature = entry.partition(",")
        # Other versions (v1a: asymmetric) are skipped, as the official libraries do.
        if sep and version == "v1" and (decoded := decode_base64(signature)) is not None:
            signatures.append(decoded)
    if not signatures:
        raise SignatureError("malformed_header", f"{SIGNATURE_HEADER} has no base64 v1 entry")
    return signatures


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The sending side: the three headers a receiver verifies ``body`` with. crmsync sends
    its own operational notifications this way (crmsync.application.notifications)."""
    key = _secret_key(secret)
    if key is None:
        raise ValueError("not a whsec_ secret")
    signed = message_id.encode() + f".{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"v1,{digest}",
    }
