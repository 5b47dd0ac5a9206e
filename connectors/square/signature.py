"""Square's ``x-square-hmacsha256-signature`` scheme.

Base64 HMAC-SHA256, keyed with the webhook subscription's signature key (as UTF-8 text),
over the notification URL as configured in the subscription, then the raw body (Square's
"Validate notifications" guide, and ``WebhooksHelper.isValidWebhookEventSignature`` in its
official SDKs). No timestamp is signed, so there is no replay window: the ``event_id`` in
the body is the dedup key.

The URL is the one the subscription names, which is the public URL ingest was called at
(``WebhookRequest.url``, built from ``CRMSYNC_INGEST_PUBLIC_BASE_URL``): behind a proxy that
rewrites the path the two differ and every delivery fails as ``bad_signature``.
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.base import (
    ProviderIssuedSecret,
    SignatureError,
    Verified,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    decode_base64,
    first_matching_secret,
    json_path_id,
    require_header,
    secret_keys,
    text_bytes,
)

HEADER = "x-square-hmacsha256-signature"


class SquareScheme(ProviderIssuedSecret):
    """Verify Square webhooks; the signature key comes from Square's Developer Console."""

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        keys = secret_keys(secrets)
        signature = decode_base64(require_header(request.headers, HEADER))
        if signature is None:
            raise SignatureError("malformed_header", f"{HEADER} is not base64")
        signed = text_bytes(request.url, "the notification URL") + request.body
        index = first_matching_secret(keys, [signed], [signature])
        if index is None:
            raise SignatureError("bad_signature", f"{HEADER} does not match")
        event_id = json_path_id(request.body, "event_id") or body_hash_id(request.body)
        return Verified(secret_index=index, provider_event_id=bounded_event_id(event_id))
