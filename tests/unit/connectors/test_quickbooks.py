"""QuickBooks Online specifics: base64 HMAC of the raw body with the verifier token."""

from __future__ import annotations

import base64
import hashlib
import hmac

from connectors.base import WebhookRequest
from connectors.quickbooks import CONNECTOR

TOKEN = "intuit-verifier-token"
# The CloudEvents form newer accounts receive: still no delivery id outside the body.
BODY = b'[{"specversion":"1.0","id":"88cd52a6","type":"qbo.customer.updated.v1"}]'


def test_verifies_base64_hmac_of_the_raw_body_and_keys_by_body_hash() -> None:
    digest = hmac.new(TOKEN.encode(), BODY, hashlib.sha256).digest()
    headers = {"intuit-signature": base64.b64encode(digest).decode()}
    verified = CONNECTOR.scheme.verify(
        WebhookRequest("POST", "https://h", headers, BODY), [TOKEN], 0
    )
    assert verified.provider_event_id == "sha256:" + hashlib.sha256(BODY).hexdigest()
    assert verified.handshake is False


def test_verifier_token_comes_from_intuit() -> None:
    assert CONNECTOR.scheme.issues_own_secret is True
