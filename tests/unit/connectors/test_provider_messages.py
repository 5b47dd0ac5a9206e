"""The provider's own words in a failed call's error (issue 17 item 7): each provider's
documented error body, read wherever the message sits in it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.http import PROVIDER_MESSAGE_CHARS, provider_message

STRIPE = {
    "error": {
        "type": "invalid_request_error",
        "code": "invoice_not_editable",
        "message": "This invoice is no longer editable",
        "param": "lines",
    }
}
XERO = {
    "ErrorNumber": 10,
    "Type": "ValidationException",
    "Message": "A validation exception occurred",
    "Elements": [
        {
            "InvoiceID": "0f4c",
            "LineItems": [{"Description": "x" * 40}] * 40,
            "ValidationErrors": [
                {
                    "Message": "This document cannot be edited as it has a payment or"
                    " credit note allocated to it."
                }
            ],
        }
    ],
}
QUICKBOOKS = {
    "Fault": {
        "Error": [
            {
                "Message": "Stale Object Error",
                "Detail": "Stale Object Error : You and root were working on this at the"
                " same time.",
                "code": "5010",
                "element": "",
            }
        ],
        "type": "ValidationFault",
    },
    "time": "2026-12-05T10:00:00.000-08:00",
}
ASCORA = {
    "error": {
        "code": "validation_failed",
        "message": "the request is invalid",
        "details": [{"field": "amount", "message": "must be positive"}],
    }
}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (STRIPE, "This invoice is no longer editable (code invoice_not_editable, param lines)"),
        (
            XERO,
            "This document cannot be edited as it has a payment or credit note allocated to it.",
        ),
        (
            QUICKBOOKS,
            "Stale Object Error - Stale Object Error : You and root were working on this at the"
            " same time. (code 5010)",
        ),
        (ASCORA, "the request is invalid; amount: must be positive (code validation_failed)"),
        (
            {"Type": None, "Title": "Forbidden", "Detail": "AuthenticationUnsuccessful"},
            "AuthenticationUnsuccessful",
        ),
        (
            {
                "errors": [
                    {
                        "category": "INVALID_REQUEST_ERROR",
                        "code": "VERSION_MISMATCH",
                        "detail": "Object version does not match latest database version.",
                        "field": "version",
                    }
                ]
            },
            "Object version does not match latest database version. (code VERSION_MISMATCH,"
            " field version)",
        ),
        (
            {
                "name": "UNPROCESSABLE_ENTITY",
                "message": "The requested action could not be performed, semantically "
                "incorrect, or failed business validation.",
                "debug_id": "b1d1f06c7246c",
                "details": [
                    {
                        "field": "/detail/invoice_number",
                        "issue": "DUPLICATE_INVOICE_NUMBER",
                        "description": "Invoice number is already in use.",
                    }
                ],
            },
            "The requested action could not be performed, semantically incorrect, or failed "
            "business validation.; /detail/invoice_number: DUPLICATE_INVOICE_NUMBER: Invoice "
            "number is already in use. (UNPROCESSABLE_ENTITY)",
        ),
        ({"message": "Property values were not valid"}, "Property values were not valid"),
        ({"error": "injected fault"}, "injected fault"),
    ],
)
def test_reads_each_providers_error_body(body: dict[str, Any], said: str) -> None:
    assert provider_message(json.dumps(body)) == said


def test_the_message_is_found_past_the_excerpt_and_capped() -> None:
    text = json.dumps(XERO)
    assert text.index("This document") > 500
    assert provider_message(text).startswith("This document cannot be edited")
    long = {"error": {"message": "m" * 5000}}
    assert len(provider_message(json.dumps(long))) == PROVIDER_MESSAGE_CHARS


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '"text"', "{}"])
def test_no_message_is_empty(text: str) -> None:
    assert provider_message(text) == ""
