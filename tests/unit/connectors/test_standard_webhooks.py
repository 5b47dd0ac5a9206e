"""Standard Webhooks (and Ascora, which uses it): the official vector and header grammar."""

from __future__ import annotations

import base64
import re

import pytest

from connectors import ascora, standard_webhooks
from connectors.base import Connector, SignatureError, WebhookRequest

# The official example from the Standard Webhooks specification and libraries.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

both = pytest.mark.parametrize(
    "conn", [standard_webhooks.CONNECTOR, ascora.CONNECTOR], ids=["standard-webhooks", "ascora"]
)


def request(signature: str = SIGNATURE, timestamp: str = str(TIMESTAMP)) -> WebhookRequest:
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
    }
    return WebhookRequest("POST", "https://h", headers, BODY)


@both
def test_verifies_the_official_example(conn: Connector) -> None:
    verified = conn.scheme.verify(request(), [SECRET], TIMESTAMP)
    assert verified.secret_index == 0
    assert verified.provider_event_id == MSG_ID


@both
def test_accepts_secret_without_whsec_prefix(conn: Connector) -> None:
    bare = SECRET.removeprefix("whsec_")
    assert conn.scheme.verify(request(), [bare], TIMESTAMP).secret_index == 0


@both
def test_accepts_a_matching_signature_anywhere_in_the_list(conn: Connector) -> None:
    signatures = f"v1,{base64.b64encode(b'x' * 32).decode()} v1a,abc {SIGNATURE}"
    assert conn.scheme.verify(request(signatures), [SECRET], TIMESTAMP).secret_index == 0


@both
def test_rejects_timestamp_too_far_in_the_future(conn: Connector) -> None:
    with pytest.raises(SignatureError) as caught:
        conn.scheme.verify(request(), [SECRET], TIMESTAMP - 301)
    assert caught.value.reason == "stale_timestamp"


@both
def test_rejects_non_numeric_timestamp_as_malformed(conn: Connector) -> None:
    with pytest.raises(SignatureError) as caught:
        conn.scheme.verify(request(timestamp="2021-02-26T15:02:10Z"), [SECRET], TIMESTAMP)
    assert caught.value.reason == "malformed_header"


@both
def test_rejects_when_no_secret_is_valid_base64(conn: Connector) -> None:
    with pytest.raises(SignatureError) as caught:
        conn.scheme.verify(request(), ["whsec_not*base64"], TIMESTAMP)
    assert caught.value.reason == "no_secret"


@both
def test_skips_an_unusable_secret_but_keeps_the_index_of_the_good_one(conn: Connector) -> None:
    verified = conn.scheme.verify(request(), ["whsec_not*base64", SECRET], TIMESTAMP)
    assert verified.secret_index == 1


@both
def test_generates_whsec_secrets_of_24_random_bytes(conn: Connector) -> None:
    secret = conn.scheme.generate_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24


@both
def test_we_issue_the_secret(conn: Connector) -> None:
    assert conn.scheme.issues_own_secret is False


def test_ascora_is_its_own_slug_on_the_standard_scheme() -> None:
    assert ascora.CONNECTOR.slug == "ascora"
    assert standard_webhooks.CONNECTOR.slug == "standard-webhooks"
    assert type(ascora.CONNECTOR.scheme) is type(standard_webhooks.CONNECTOR.scheme)
