"""Xero specifics: Intent to Receive, thin payloads keyed by body hash."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.xero import CONNECTOR
from tests.signing import sign

KEY = "xero-webhook-key-from-the-developer-portal"
NOW = 1_700_000_000.0
INTENT_TO_RECEIVE = (
    b'{"events":[],"firstEventSequence":0,"lastEventSequence":0,"entropy":"S0m3r4Nd0mt3xt"}'
)


def signed(body: bytes, key: str = KEY) -> WebhookRequest:
    return WebhookRequest("POST", "https://h", sign("xero", key, body, now=NOW), body)


def test_flags_a_validly_signed_intent_to_receive_as_handshake() -> None:
    verified = CONNECTOR.scheme.verify(signed(INTENT_TO_RECEIVE), [KEY], NOW)
    assert verified.handshake is True


def test_rejects_a_badly_signed_intent_to_receive() -> None:
    # Xero sends these on purpose and expects 401: it must raise, not be a handshake.
    with pytest.raises(SignatureError) as caught:
        CONNECTOR.scheme.verify(signed(INTENT_TO_RECEIVE, "not-the-key"), [KEY], NOW)
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "body",
    [b'{"events":[{"resourceId":"r1"}]}', b'{"entropy":"x"}', b"[]", b"not json"],
    ids=["events", "no-events-key", "array", "not-json"],
)
def test_does_not_flag_other_bodies_as_handshake(body: bytes) -> None:
    verified = CONNECTOR.scheme.verify(signed(body), [KEY], NOW)
    assert verified.handshake is False
    assert verified.provider_event_id == "sha256:" + hashlib.sha256(body).hexdigest()


def test_signature_is_base64_hmac_of_the_raw_body() -> None:
    digest = hmac.new(KEY.encode(), INTENT_TO_RECEIVE, hashlib.sha256).digest()
    headers = {"x-xero-signature": base64.b64encode(digest).decode()}
    request = WebhookRequest("POST", "https://h", headers, INTENT_TO_RECEIVE)
    assert CONNECTOR.scheme.verify(request, [KEY], NOW).handshake is True


def test_key_comes_from_xero() -> None:
    assert CONNECTOR.scheme.issues_own_secret is True
