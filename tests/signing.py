"""Sign a body the way each provider does, for tests of verification and of ingest.

Written from the providers' documentation with ``hmac`` directly, not with ``connectors``:
a test that signed with the code under test would pass whatever that code did.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.generic import GenericSchemeConfig

DEFAULT_URL = "https://hooks.example.com/webhooks/x/y"

# HubSpot's "Validating requests" table: these are decoded in the URI before signing.
_HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def _hmac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hubspot_uri(url: str) -> str:
    for encoded, decoded in _HUBSPOT_DECODED.items():
        url = url.replace(encoded, decoded).replace(encoded.lower(), decoded)
    return url


def sign(
    provider: str,
    secret: str,
    body: bytes,
    *,
    now: float,
    url: str = DEFAULT_URL,
    method: str = "POST",
    event_id: str = "msg_test",
    generic_config: GenericSchemeConfig | None = None,
) -> dict[str, str]:
    """The lower-cased headers ``provider`` would send with ``body`` signed by ``secret``.

    ``now`` is the send time (unix seconds); ``event_id`` goes where the provider carries
    a delivery id in a header (Standard Webhooks / Ascora, Shopify, generic).
    """
    headers = {"content-type": "application/json"}
    key = secret.encode()
    seconds = str(int(now))
    if provider == "stripe":
        signature = _hmac(key, f"{seconds}.".encode() + body).hex()
        headers["stripe-signature"] = f"t={seconds},v1={signature}"
    elif provider in {"standard-webhooks", "ascora"}:
        raw_key = base64.b64decode(secret.removeprefix("whsec_"))
        signature = _b64(_hmac(raw_key, f"{event_id}.{seconds}.".encode() + body))
        headers |= {
            "webhook-id": event_id,
            "webhook-timestamp": seconds,
            "webhook-signature": f"v1,{signature}",
        }
    elif provider == "xero":
        headers["x-xero-signature"] = _b64(_hmac(key, body))
    elif provider == "square":
        # Square signs the notification URL as its subscription names it, then the body.
        headers["x-square-hmacsha256-signature"] = _b64(_hmac(key, url.encode() + body))
    elif provider == "quickbooks":
        headers["intuit-signature"] = _b64(_hmac(key, body))
    elif provider == "shopify":
        headers |= {
            "x-shopify-hmac-sha256": _b64(_hmac(key, body)),
            "x-shopify-webhook-id": event_id,
            "x-shopify-topic": "customers/update",
            "x-shopify-shop-domain": "example.myshopify.com",
        }
    elif provider == "hubspot":
        millis = str(int(now * 1000))
        message = (method + hubspot_uri(url)).encode() + body + millis.encode()
        headers |= {
            "x-hubspot-signature-v3": _b64(_hmac(key, message)),
            "x-hubspot-request-timestamp": millis,
        }
    elif provider == "generic":
        if generic_config is None:
            raise ValueError("signing for generic needs generic_config")
        headers |= _sign_generic(generic_config, key, body, seconds, event_id)
    else:
        raise ValueError(f"no signer for provider {provider!r}")
    return headers


def _sign_generic(
    config: GenericSchemeConfig, key: bytes, body: bytes, seconds: str, event_id: str
) -> dict[str, str]:
    headers: dict[str, str] = {}
    message = body
    if config.timestamp_header is not None:
        headers[config.timestamp_header] = seconds
        if config.signed_payload == "timestamp.body":
            message = f"{seconds}.".encode() + body
    digest = _hmac(key, message, config.algorithm)
    encoded = digest.hex() if config.encoding == "hex" else _b64(digest)
    headers[config.signature_header] = config.prefix + encoded
    if config.event_id_header is not None:
        headers[config.event_id_header] = event_id
    return headers
