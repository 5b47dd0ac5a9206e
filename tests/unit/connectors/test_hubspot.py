"""HubSpot v3 specifics: URI decoding, millisecond timestamps, batch event ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.hubspot import CONNECTOR
from connectors.hubspot.signature import signed_uri
from tests.signing import sign

SECRET = "hubspot-app-client-secret"
NOW = 1_700_000_000.0
BODY = b'[{"eventId":3,"subscriptionType":"contact.propertyChange","objectId":7}]'
ENCODED_URL = "https://hooks.example.com/webhooks/hubspot/c1?src=hs%3Aapp%2Fv3&x=%28a%29&q=a%2Bb"


def verify(request: WebhookRequest, now: float = NOW) -> str:
    return CONNECTOR.scheme.verify(request, [SECRET], now).provider_event_id


def reason(request: WebhookRequest, now: float = NOW) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(request, now)
    return caught.value.reason


def request(url: str = ENCODED_URL, body: bytes = BODY, method: str = "POST") -> WebhookRequest:
    headers = sign("hubspot", SECRET, body, now=NOW, url=url, method=method)
    return WebhookRequest(method, url, headers, body)


def test_decodes_exactly_the_documented_characters_before_signing() -> None:
    encoded = "".join(
        f"%{h}" for h in ("3A", "2F", "3F", "40", "21", "24", "27", "28", "29", "2A", "2C", "3B")
    )
    assert (
        signed_uri(f"https://h/p?v={encoded}&w=%2B%20%2f") == "https://h/p?v=:/?@!$'()*,;&w=%2B%20/"
    )


def test_verifies_request_signed_over_the_decoded_uri() -> None:
    assert verify(request()) == "3"


def test_verifies_request_signed_over_the_uri_as_given() -> None:
    # HubSpot's own Python SDK signs the URI undecoded; a genuine request must pass either way.
    millis = str(int(NOW * 1000))
    message = ("POST" + ENCODED_URL).encode() + BODY + millis.encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), message, hashlib.sha256).digest())
    headers = {"x-hubspot-signature-v3": signature.decode(), "x-hubspot-request-timestamp": millis}
    assert verify(WebhookRequest("POST", ENCODED_URL, headers, BODY)) == "3"


def test_rejects_request_replayed_to_another_url() -> None:
    signed = request()
    moved = WebhookRequest("POST", ENCODED_URL.replace("c1", "c2"), signed.headers, BODY)
    assert reason(moved) == "bad_signature"


def test_rejects_request_with_another_method() -> None:
    signed = request()
    assert reason(WebhookRequest("PUT", ENCODED_URL, signed.headers, BODY)) == "bad_signature"


def test_reads_the_timestamp_as_milliseconds() -> None:
    # Read as seconds, a millisecond value would be millennia ahead and always stale.
    assert verify(request(), now=NOW + 299) == "3"
    assert reason(request(), now=NOW + 301) == "stale_timestamp"


def test_event_id_is_the_sorted_event_ids_of_the_batch() -> None:
    body = json.dumps([{"eventId": 30}, {"eventId": 1}, {"eventId": 200}]).encode()
    assert verify(request(body=body)) == "1,200,30"


@pytest.mark.parametrize(
    "body",
    [b'{"eventId":1}', b"[]", b'[{"eventId":1},{"objectId":2}]', b'[{"eventId":true}]', b"<xml/>"],
    ids=["object", "empty", "one-without-id", "bool-id", "not-json"],
)
def test_event_id_falls_back_to_body_hash(body: bytes) -> None:
    assert verify(request(body=body)) == "sha256:" + hashlib.sha256(body).hexdigest()


def test_event_id_of_a_large_batch_fits_the_envelope() -> None:
    body = json.dumps([{"eventId": 10**12 + i} for i in range(100)]).encode()
    event_id = verify(request(body=body))
    assert event_id.startswith("sha256:")
    assert len(event_id) <= 512


def test_secret_comes_from_hubspot() -> None:
    assert CONNECTOR.scheme.issues_own_secret is True


def test_rejects_url_that_is_not_utf8_text_as_malformed() -> None:
    signed = request()
    undecodable = WebhookRequest("POST", ENCODED_URL + "\udcff", signed.headers, BODY)
    assert reason(undecodable) == "malformed_header"
