"""Xero's ``x-xero-signature`` scheme.

Base64 HMAC-SHA256 of the raw body keyed with the app's webhook key (as a UTF-8 string); no
timestamp, so no replay window: dedup on the body hash carries the weight.

Intent to Receive: when a webhook URL is saved Xero posts correctly and incorrectly signed
requests whose ``events`` list is empty and expects 200 for the good ones and 401 for the
bad ones, within 5 s, empty body. A validly signed one is reported as ``handshake=True``;
a badly signed one raises SignatureError like any other (the edge answers 401).
"""

from __future__ import annotations

from connectors.base import Base64BodyScheme, parse_json, sign_base64_body

HEADER = "x-xero-signature"


class XeroScheme(Base64BodyScheme):
    """Verify Xero webhooks; the webhook key comes from Xero's developer portal.

    Xero's payload carries no delivery id (each event is a resource pointer): the body
    hash (the base's event id) dedups byte-identical redeliveries, the processor's upsert
    the rest.
    """

    header = HEADER

    def is_handshake(self, body: bytes) -> bool:
        payload = parse_json(body)
        return isinstance(payload, dict) and payload.get("events") == []


def sign(secret: str, body: bytes) -> dict[str, str]:
    """The sending side: the header Xero sends ``body`` with."""
    return {HEADER: sign_base64_body(secret, body)}
