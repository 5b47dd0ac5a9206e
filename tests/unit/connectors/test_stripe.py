"""Stripe specifics: header grammar, several v1 signatures, event id from the body."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.stripe import CONNECTOR
from tests.signing import sign

SECRET = "whsec_test_secret_for_stripe_0123456789"
BODY = b'{"id":"evt_3Ph","object":"event","type":"invoice.paid"}'
NOW = 1_700_000_000.0


def v1(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(header: str, body: bytes = BODY, secrets: tuple[str, ...] = (SECRET,)) -> str:
    request = WebhookRequest("POST", "https://h", {"stripe-signature": header}, body)
    return CONNECTOR.scheme.verify(request, secrets, NOW).provider_event_id


def reason(header: str) -> str:
    with pytest.raises(SignatureError) as caught:
        verify(header)
    return caught.value.reason


def test_accepts_any_matching_v1_among_several() -> None:
    t = int(NOW)
    header = f"t={t},v1={v1('whsec_other', t, BODY)},v1={v1(SECRET, t, BODY)}"
    assert verify(header) == "evt_3Ph"


def test_ignores_v0_and_unknown_schemes() -> None:
    t = int(NOW)
    header = f"t={t},v0={'0' * 64},v9=zzz,v1={v1(SECRET, t, BODY)}"
    assert verify(header) == "evt_3Ph"


def test_tolerates_spaces_between_header_items() -> None:
    t = int(NOW)
    assert verify(f"t={t}, v1={v1(SECRET, t, BODY)}") == "evt_3Ph"


def test_rejects_header_with_only_a_v0_signature_as_malformed() -> None:
    assert reason(f"t={int(NOW)},v0={v1(SECRET, int(NOW), BODY)}") == "malformed_header"


def test_rejects_header_without_timestamp_as_malformed() -> None:
    assert reason(f"v1={v1(SECRET, int(NOW), BODY)}") == "malformed_header"


# int() would accept the last two; Stripe's t= is ASCII digits only.
ARABIC_INDIC_DIGITS = "".join(chr(0x0660 + int(d)) for d in "1700000000")


@pytest.mark.parametrize("timestamp", ["soon", "-1700000000", "1_700_000_000", ARABIC_INDIC_DIGITS])
def test_rejects_non_numeric_timestamp_as_malformed(timestamp: str) -> None:
    assert reason(f"t={timestamp},v1={v1(SECRET, int(NOW), BODY)}") == "malformed_header"


def test_falls_back_to_body_hash_when_body_has_no_id() -> None:
    body = b"not json at all"
    t = int(NOW)
    event_id = verify(f"t={t},v1={v1(SECRET, t, body)}", body=body)
    assert event_id == "sha256:" + hashlib.sha256(body).hexdigest()


def test_sign_helper_matches_stripe_header_grammar() -> None:
    header = sign("stripe", SECRET, BODY, now=NOW)["stripe-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)


def test_generates_secrets_in_stripe_format() -> None:
    assert re.fullmatch(r"whsec_[A-Za-z0-9]{32}", CONNECTOR.scheme.generate_secret())


def test_secret_comes_from_stripe() -> None:
    assert CONNECTOR.scheme.issues_own_secret is True


def test_falls_back_to_body_hash_when_body_id_is_a_lone_surrogate() -> None:
    body = b'{"id":"\\ud800"}'
    t = int(NOW)
    event_id = verify(f"t={t},v1={v1(SECRET, t, body)}", body=body)
    assert event_id == "sha256:" + hashlib.sha256(body).hexdigest()
