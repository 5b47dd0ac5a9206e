"""The shared vocabulary: the bounded error reasons and the event id bound."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.base import (
    MAX_EVENT_ID_LENGTH,
    SIGNATURE_ERROR_REASONS,
    SignatureError,
    Verified,
    WebhookRequest,
    bounded_event_id,
)


def test_error_reasons_are_the_bounded_label_set() -> None:
    assert set(SIGNATURE_ERROR_REASONS) == {
        "missing_header",
        "malformed_header",
        "bad_signature",
        "stale_timestamp",
        "no_secret",
        "bad_certificate",
    }


def test_error_carries_reason_and_detail() -> None:
    error = SignatureError("missing_header", "stripe-signature header absent")
    assert error.reason == "missing_header"
    assert str(error) == "missing_header: stripe-signature header absent"


def test_request_and_result_are_immutable() -> None:
    request = WebhookRequest("POST", "https://h", {}, b"")
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.body = b"x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Verified(0, "id").secret_index = 1  # type: ignore[misc]


def test_keeps_event_ids_that_fit_and_hashes_longer_ones() -> None:
    fits = "e" * MAX_EVENT_ID_LENGTH
    assert bounded_event_id(fits) == fits
    hashed = bounded_event_id(fits + "e")
    assert hashed.startswith("sha256:")
    assert hashed == bounded_event_id(fits + "e")
    assert len(hashed) <= MAX_EVENT_ID_LENGTH
