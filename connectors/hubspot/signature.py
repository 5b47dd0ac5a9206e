"""HubSpot's v3 request signature (``x-hubspot-signature-v3``).

Base64 HMAC-SHA256, keyed with the app's client secret, of
``method + uri + body + timestamp`` where the timestamp is ``x-hubspot-request-timestamp``
in milliseconds. HubSpot's "Validating requests" page says to decode, in the URI, the
percent-encoded characters of a fixed table (``%3A`` ``%2F`` ``%3F`` ``%40`` ``%21`` ``%24``
``%27`` ``%28`` ``%29`` ``%2A`` ``%2C`` ``%3B``) before signing; HubSpot's own Python SDK
(``hubspot.utils.signature``) signs the URI as given. Both forms are tried with the same
secret, so neither reading rejects a genuine request and neither weakens the check.

The older v1/v2 signatures (no timestamp, replayable) are not accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence

from connectors.base import (
    ProviderIssuedSecret,
    SignatureError,
    Verified,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    check_tolerance,
    decode_base64,
    first_matching_secret,
    parse_json,
    parse_timestamp,
    require_header,
    scalar_id,
    secret_keys,
    text_bytes,
)

SIGNATURE_HEADER = "x-hubspot-signature-v3"
TIMESTAMP_HEADER = "x-hubspot-request-timestamp"
# HubSpot's documented window: "reject the request if the timestamp is older than 5
# minutes"; the same bound is applied to timestamps in the future.
TOLERANCE_SECONDS = 300

# The table on HubSpot's "Validating requests" page (v3 signature).
_DECODED = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
# Percent-encoding hex digits are case-insensitive (RFC 3986 §2.1), so %2f decodes too.
_ENCODED = re.compile("%(" + "|".join(_DECODED) + ")", re.IGNORECASE)


def signed_uri(url: str) -> str:
    """The URI as HubSpot documents it is signed: the table's characters decoded."""
    return _ENCODED.sub(lambda m: _DECODED[m.group(1).upper()], url)


class HubSpotScheme(ProviderIssuedSecret):
    """Verify HubSpot v3 signatures; the client secret comes from HubSpot's app settings."""

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        keys = secret_keys(secrets)
        signature_text = require_header(request.headers, SIGNATURE_HEADER)
        timestamp_text = require_header(request.headers, TIMESTAMP_HEADER)
        timestamp_ms = parse_timestamp(timestamp_text, TIMESTAMP_HEADER)
        signature = decode_base64(signature_text)
        if signature is None:
            raise SignatureError("malformed_header", f"{SIGNATURE_HEADER} is not base64")
        # HubSpot signs the body as a UTF-8 string; concatenating the raw bytes is the same
        # for every body HubSpot can send and cannot fail on one it cannot.
        suffix = request.body + timestamp_text.encode()
        method = text_bytes(request.method.upper(), "method")
        # The documented form first; dict.fromkeys drops the second when they are equal.
        uris = dict.fromkeys((signed_uri(request.url), request.url))
        # A URL that is not UTF-8 text cannot be what HubSpot signed; "malformed_header" is
        # the nearest bounded reason (the URL is request metadata, like a header).
        messages = [method + text_bytes(uri, "url") + suffix for uri in uris]
        index = first_matching_secret(keys, messages, [signature])
        if index is None:
            raise SignatureError("bad_signature", f"{SIGNATURE_HEADER} does not match")
        # Checked after the signature so "stale_timestamp" counts authentic replays only.
        check_tolerance(timestamp_ms / 1000, now, TOLERANCE_SECONDS, TIMESTAMP_HEADER)
        return Verified(secret_index=index, provider_event_id=_event_id(request.body))


def _event_id(body: bytes) -> str:
    """The batch's ``eventId``s, sorted and comma-joined; the body hash if any is missing.

    HubSpot posts arrays of up to 100 events; the same batch redelivered has the same ids.
    """
    payload = parse_json(body)
    if not isinstance(payload, list) or not payload:
        return body_hash_id(body)
    ids: list[str] = []
    for event in payload:
        event_id = scalar_id(event.get("eventId")) if isinstance(event, dict) else None
        if event_id is None:
            return body_hash_id(body)
        ids.append(event_id)
    return bounded_event_id(",".join(sorted(ids)))


def sign(secret: str, method: str, url: str, body: bytes, timestamp_ms: int) -> dict[str, str]:
    """The sending side (v3): the headers HubSpot sends ``body`` to ``url`` with."""
    message = method.upper().encode() + signed_uri(url).encode() + body + str(timestamp_ms).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return {
        SIGNATURE_HEADER: base64.b64encode(digest).decode("ascii"),
        TIMESTAMP_HEADER: str(timestamp_ms),
    }
