"""What every scheme promises, run against each of them (one case per scheme)."""

from __future__ import annotations

import pytest

from connectors.base import SIGNATURE_ERROR_REASONS, SignatureError, WebhookRequest
from tests.unit.connectors.cases import CASES, NOW, Case

each_case = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
timestamped = pytest.mark.parametrize(
    "case", [c for c in CASES if c.timestamped], ids=[c.name for c in CASES if c.timestamped]
)
untimestamped = pytest.mark.parametrize(
    "case",
    [c for c in CASES if not c.timestamped],
    ids=[c.name for c in CASES if not c.timestamped],
)


def rejection(case: Case, request: WebhookRequest, secrets: list[str]) -> str:
    """The reason ``case``'s scheme rejects ``request`` with (fails if it verifies)."""
    with pytest.raises(SignatureError) as caught:
        case.connector.scheme.verify(request, secrets, NOW)
    assert caught.value.reason in SIGNATURE_ERROR_REASONS
    return caught.value.reason


@each_case
def test_signed_request_verifies_with_the_provider_event_id(case: Case) -> None:
    verified = case.connector.scheme.verify(case.signed(case.new_secret), [case.new_secret], NOW)
    assert verified.secret_index == 0
    assert verified.provider_event_id == case.event_id
    assert verified.handshake is False


@each_case
def test_rejects_tampered_body(case: Case) -> None:
    request = case.request(case.headers(case.new_secret), body=case.body + b" ")
    assert rejection(case, request, [case.new_secret]) == "bad_signature"


@each_case
def test_rejects_wrong_secret(case: Case) -> None:
    assert rejection(case, case.signed(case.old_secret), [case.new_secret]) == "bad_signature"


@each_case
def test_rejects_missing_headers(case: Case) -> None:
    for name in case.required_headers:
        headers = case.headers(case.new_secret)
        del headers[name]
        assert rejection(case, case.request(headers), [case.new_secret]) == "missing_header"


@each_case
def test_rejects_malformed_signature_header(case: Case) -> None:
    headers = case.headers(case.new_secret) | {case.signature_header: case.malformed_value}
    assert rejection(case, case.request(headers), [case.new_secret]) == "malformed_header"


@each_case
def test_rejects_blank_signature_header_as_malformed(case: Case) -> None:
    headers = case.headers(case.new_secret) | {case.signature_header: "  "}
    assert rejection(case, case.request(headers), [case.new_secret]) == "malformed_header"


@each_case
def test_rejects_when_the_connection_has_no_secret(case: Case) -> None:
    assert rejection(case, case.signed(case.new_secret), []) == "no_secret"


@each_case
def test_never_uses_an_empty_secret_as_key(case: Case) -> None:
    # Anyone can compute an HMAC under an empty key: a configured "" must not verify.
    assert rejection(case, case.signed(case.new_secret), [""]) == "no_secret"


@each_case
def test_rotation_accepts_either_secret_and_reports_which(case: Case) -> None:
    scheme = case.connector.scheme
    both = [case.old_secret, case.new_secret]
    assert scheme.verify(case.signed(case.old_secret), both, NOW).secret_index == 0
    assert scheme.verify(case.signed(case.new_secret), both, NOW).secret_index == 1


@each_case
def test_rotation_done_rejects_the_retired_secret(case: Case) -> None:
    assert rejection(case, case.signed(case.old_secret), [case.new_secret]) == "bad_signature"


@each_case
def test_generated_secret_is_fresh_and_verifies_requests_signed_with_it(case: Case) -> None:
    scheme = case.connector.scheme
    secret = scheme.generate_secret()
    assert secret != scheme.generate_secret()
    assert scheme.verify(case.signed(secret), [secret], NOW).secret_index == 0


@each_case
def test_error_message_never_carries_secret_or_signature(case: Case) -> None:
    headers = case.headers(case.old_secret)
    with pytest.raises(SignatureError) as caught:
        case.connector.scheme.verify(case.request(headers), [case.new_secret], NOW)
    message = str(caught.value)
    for secret_text in (case.new_secret, case.old_secret, headers[case.signature_header]):
        assert secret_text not in message


@each_case
def test_kept_headers_are_lower_case_and_never_the_signature(case: Case) -> None:
    kept = case.connector.kept_headers
    assert "content-type" in kept
    assert all(name == name.lower() for name in kept)
    assert case.signature_header not in kept


@untimestamped
def test_ignores_the_clock_when_the_scheme_has_no_timestamp(case: Case) -> None:
    request = case.signed(case.new_secret, now=0)
    a_year_later = NOW + 365 * 86_400
    assert case.connector.scheme.verify(request, [case.new_secret], a_year_later).secret_index == 0


@timestamped
@pytest.mark.parametrize("skew", [-301, 301], ids=["old", "future"])
def test_rejects_stale_timestamp(case: Case, skew: int) -> None:
    request = case.signed(case.new_secret, now=NOW + skew)
    assert rejection(case, request, [case.new_secret]) == "stale_timestamp"


@timestamped
@pytest.mark.parametrize("skew", [-300, 300], ids=["old", "future"])
def test_accepts_timestamp_at_the_edge_of_the_window(case: Case, skew: int) -> None:
    request = case.signed(case.new_secret, now=NOW + skew)
    assert case.connector.scheme.verify(request, [case.new_secret], NOW).secret_index == 0


@timestamped
def test_rejects_forged_request_as_bad_signature_even_when_stale(case: Case) -> None:
    # Signature before clock: "stale_timestamp" then only ever counts authentic replays.
    request = case.signed(case.old_secret, now=NOW - 3600)
    assert rejection(case, request, [case.new_secret]) == "bad_signature"
