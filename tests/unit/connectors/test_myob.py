"""MYOB's mapping both ways (names, addresses, money, GST, statuses), RowVersion, the
whole-record PUT merge, its 403 rate-limit answers and its error bodies; no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.calls import CallFailedError, attempt
from connectors.http import AuthError, RateLimitedError, provider_message
from connectors.myob.client import DAILY_PAUSE_SECONDS, _rate_limited, merge_record
from connectors.myob.mapping import Mapper, split_name
from connectors.spec import MappingError
from tests.unit.connections import connection_info, handle_for

SETTINGS: dict[str, Any] = {
    "myob_company_file_id": "cf-1",
    "myob_currency": "AUD",
    "myob_item_uid": "item-services",
    "myob_tax_code_uid": "tax-gst",
    "myob_free_tax_code_uid": "tax-fre",
}
MAPPER = Mapper()

CARD = {
    "UID": "6b2ae8e9-7d4b-4b29-b86e-2f6b3a0c1d11",
    "IsIndividual": True,
    "FirstName": "Ada King",
    "LastName": "Lovelace",
    "IsActive": True,
    "Notes": "Prefers mornings",
    "Addresses": [
        {"Location": 2, "Email": "accounts@elsewhere.example"},
        {
            "Location": 1,
            "Street": "1 Analytical Way\nLevel 2",
            "City": "Sydney",
            "State": "NSW",
            "PostCode": "2000",
            "Country": "AU",
            "Phone1": "02 5550 1234",
            "Email": "ada@example.com",
        },
    ],
    "LastModified": "2026-12-06T03:04:05.123",
    "RowVersion": "-5179612643144040448",
}
INVOICE = {
    "UID": "inv-1",
    "Number": "00000042",
    "Date": "2026-12-01T00:00:00",
    "Customer": {"UID": CARD["UID"]},
    "IsTaxInclusive": False,
    "Terms": {"PaymentIsDue": "InAGivenNumberOfDays", "BalanceDueDate": 14,
              "DueDate": "2026-12-15T00:00:00"},
    "Lines": [
        {"Type": "Transaction", "Description": "Labour", "ShipQuantity": 2, "UnitPrice": 90,
         "Total": 180, "Item": {"UID": "item-services"}, "TaxCode": {"UID": "tax-gst"}},
        {"Type": "Transaction", "Description": "Materials", "ShipQuantity": 1,
         "UnitPrice": 25.5, "Total": 25.5, "Item": {"UID": "item-services"},
         "TaxCode": {"UID": "tax-fre"}},
        {"Type": "Header", "Description": "— a header line carries no money —"},
    ],
    "Subtotal": 205.5,
    "TotalTax": 18,
    "TotalAmount": 223.5,
    "BalanceDueAmount": 173.5,
    "Status": "Open",
    "LastModified": "2026-12-06T03:04:06.000",
    "RowVersion": "8323",
}  # fmt: skip
PAYMENT = {
    "UID": "pay-1",
    "Customer": {"UID": CARD["UID"]},
    "AmountReceived": 50,
    "Date": "2026-12-02T00:00:00",
    "Memo": "Deposit",
    "PaymentMethod": "Bank Transfer",
    "Invoices": [{"UID": "inv-1", "AmountApplied": 50, "Type": "Invoice"}],
    "LastModified": "2026-12-06T03:04:07.000",
    "RowVersion": "99",
}


def test_an_individuals_card_reads_as_a_customer_with_its_main_address() -> None:
    record = MAPPER.to_canonical("customer", CARD, SETTINGS)
    assert record.external_id == CARD["UID"]
    assert record.version == "-5179612643144040448"
    assert record.updated_at == datetime(2026, 12, 6, 3, 4, 5, 123000, tzinfo=UTC)
    assert record.data == {
        "name": "Ada King Lovelace",
        "email": "ada@example.com",
        "phone": "02 5550 1234",
        "notes": "Prefers mornings",
        "address": {
            "line1": "1 Analytical Way",
            "line2": "Level 2",
            "city": "Sydney",
            "region": "NSW",
            "postal_code": "2000",
            "country": "AU",
        },
    }
    assert not record.deleted


def test_a_company_card_names_the_company_and_an_inactive_one_is_deleted() -> None:
    card = {**CARD, "IsIndividual": False, "CompanyName": "Harbour Plumbing", "IsActive": False}
    record = MAPPER.to_canonical("customer", card, SETTINGS)
    assert record.data["name"] == record.data["company"] == "Harbour Plumbing"
    assert record.deleted


def test_a_free_text_country_is_not_taken_for_a_code() -> None:
    card = {**CARD, "Addresses": [{"Location": 1, "Country": "Australia", "City": "Perth"}]}
    address = MAPPER.to_canonical("customer", card, SETTINGS).data["address"]
    assert {k: v for k, v in address.items() if v is not None} == {"city": "Perth"}


def test_a_customer_round_trips_through_myobs_card() -> None:
    data = MAPPER.to_canonical("customer", CARD, SETTINGS).data
    body = MAPPER.from_canonical("customer", data, {}, SETTINGS)
    assert body["IsIndividual"] is True
    assert (body["FirstName"], body["LastName"]) == ("Ada King", "Lovelace")
    assert body["Addresses"][0]["Street"] == "1 Analytical Way\nLevel 2"
    again = MAPPER.to_canonical(
        "customer", {**body, "UID": "x", "LastModified": CARD["LastModified"]}, SETTINGS
    )
    assert again.data == data


def test_a_customer_with_only_a_company_becomes_a_company_card() -> None:
    body = MAPPER.from_canonical("customer", {"company": "Harbour Plumbing"}, {}, SETTINGS)
    assert body["IsIndividual"] is False
    assert body["CompanyName"] == "Harbour Plumbing"


@pytest.mark.parametrize(
    ("name", "split"),
    [("Cher", ("", "Cher")), ("Ada Lovelace", ("Ada", "Lovelace")), (" A B C ", ("A B", "C"))],
)
def test_one_name_splits_at_its_last_word(name: str, split: tuple[str, str]) -> None:
    assert split_name(name) == split


def test_an_invoice_reads_with_exact_money_gst_per_line_and_myobs_balance() -> None:
    record = MAPPER.to_canonical("invoice", INVOICE, SETTINGS)
    assert record.refs == {"customer_id": CARD["UID"]}
    assert record.version == "8323"
    assert record.data == {
        "number": "00000042",
        "status": "open",
        "currency": "AUD",
        "issued_on": "2026-12-01",
        "due_on": "2026-12-15",
        "lines": [
            {"description": "Labour", "quantity": "2", "unit_amount": 9000, "tax_amount": 1800},
            {"description": "Materials", "quantity": "1", "unit_amount": 2550, "tax_amount": 0},
        ],
        "subtotal": 20550,
        "tax": 1800,
        "total": 22350,
        "amount_due": 17350,
    }


def test_a_tax_inclusive_invoice_reads_its_lines_ex_tax() -> None:
    invoice = {
        **INVOICE,
        "IsTaxInclusive": True,
        "Lines": [{**INVOICE["Lines"][0], "Total": 198, "UnitPrice": 99}],  # type: ignore[index]
        "TotalTax": 18,
        "TotalAmount": 198,
        "BalanceDueAmount": 198,
    }
    record = MAPPER.to_canonical("invoice", invoice, SETTINGS)
    [line] = record.data["lines"]
    assert (line["quantity"], line["unit_amount"], line["tax_amount"]) == ("2", 9000, 1800)
    assert (record.data["subtotal"], record.data["tax"], record.data["total"]) == (
        18000,
        1800,
        19800,
    )


@pytest.mark.parametrize(("status", "canonical"), [("Closed", "paid"), ("Credit", "paid")])
def test_closed_and_credit_invoices_are_paid(status: str, canonical: str) -> None:
    invoice = {**INVOICE, "Status": status, "BalanceDueAmount": -5 if status == "Credit" else 0}
    record = MAPPER.to_canonical("invoice", invoice, SETTINGS)
    assert record.data["status"] == canonical
    assert record.data["amount_due"] == 0


def test_an_amount_with_more_places_than_the_currency_is_refused_not_rounded() -> None:
    with pytest.raises(MappingError, match=r"TotalAmount: 223\.555"):
        MAPPER.to_canonical("invoice", {**INVOICE, "TotalAmount": 223.555}, SETTINGS)


def test_an_invoice_is_written_ex_tax_with_the_code_that_reproduces_each_lines_tax() -> None:
    data = MAPPER.to_canonical("invoice", INVOICE, SETTINGS).data
    body = MAPPER.from_canonical("invoice", data, {"customer_id": "cus-9"}, SETTINGS)
    assert body["Customer"] == {"UID": "cus-9"}
    assert body["IsTaxInclusive"] is False
    assert body["Date"] == "2026-12-01T00:00:00"
    assert body["Terms"] == {"PaymentIsDue": "InAGivenNumberOfDays", "BalanceDueDate": 14}
    assert [(li["ShipQuantity"], li["UnitPrice"], li["Total"]) for li in body["Lines"]] == [
        (2, 90, 180),
        (1, 25.5, 25.5),
    ]
    assert [li["TaxCode"]["UID"] for li in body["Lines"]] == ["tax-gst", "tax-fre"]
    assert all(li["Item"] == {"UID": "item-services"} for li in body["Lines"])
    # No totals, balance or status: MYOB computes them.
    assert not {"Subtotal", "TotalTax", "TotalAmount", "BalanceDueAmount", "Status"} & set(body)


def test_a_line_tax_no_tax_code_reproduces_is_refused() -> None:
    line = {"description": "Odd", "quantity": "1", "unit_amount": 10000, "tax_amount": 1500}
    with pytest.raises(MappingError, match=r"10% of 10000 is 1000\), not 1500"):
        MAPPER.from_canonical("invoice", {"currency": "AUD", "lines": [line]}, {}, SETTINGS)


def test_an_invoice_in_another_currency_than_the_company_files_is_refused() -> None:
    with pytest.raises(MappingError, match="keeps its books in AUD"):
        MAPPER.from_canonical("invoice", {"currency": "NZD", "lines": []}, {}, SETTINGS)


def test_lines_need_the_item_and_tax_code_settings() -> None:
    line = {"quantity": "1", "unit_amount": 100, "tax_amount": 0}
    settings = {"myob_company_file_id": "cf-1"}
    with pytest.raises(MappingError, match="myob_free_tax_code_uid"):
        MAPPER.from_canonical("invoice", {"currency": "AUD", "lines": [line]}, {}, settings)


def test_a_customer_payment_reads_and_writes_applied_to_its_invoice() -> None:
    record = MAPPER.to_canonical("payment", PAYMENT, SETTINGS)
    assert record.refs == {"invoice_id": "inv-1", "customer_id": CARD["UID"]}
    assert record.data == {
        "amount": 5000,
        "currency": "AUD",
        "status": "succeeded",
        "method": "bank transfer",
        "reference": "Deposit",
        "paid_at": "2026-12-02T00:00:00Z",
    }
    body = MAPPER.from_canonical("payment", record.data, record.refs, SETTINGS)
    assert body["AmountReceived"] == 50
    assert body["Invoices"] == [{"UID": "inv-1", "AmountApplied": 50, "Type": "Invoice"}]
    assert body["DepositTo"] == "UndepositedFunds"
    assert body["Customer"] == {"UID": CARD["UID"]}
    assert body["Memo"] == "Deposit"


def test_only_money_received_is_written() -> None:
    with pytest.raises(MappingError, match="money received only"):
        MAPPER.from_canonical(
            "payment", {"amount": 100, "currency": "AUD", "status": "pending"}, {}, SETTINGS
        )


def test_myob_sends_no_webhooks_so_a_body_is_never_mapped() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.parse_webhook(b"{}", {}, SETTINGS)
    assert caught.value.reason == "unknown_event_type"


# --- RowVersion and the whole-record PUT ----------------------------------------------------


def test_a_put_keeps_uid_and_row_version_and_merges_the_main_address() -> None:
    changes = {
        "FirstName": "Ada",
        "RowVersion": "stale",
        "Addresses": [{"Location": 1, "Email": "new@example.com"}],
    }
    merged = merge_record(CARD, changes)
    assert merged["UID"] == CARD["UID"]
    assert merged["RowVersion"] == CARD["RowVersion"]  # the version it was read at
    assert merged["FirstName"] == "Ada"
    assert merged["Notes"] == "Prefers mornings"
    main, other = merged["Addresses"]
    assert main["Email"] == "new@example.com"
    assert main["Street"] == "1 Analytical Way\nLevel 2"
    assert other == {"Location": 2, "Email": "accounts@elsewhere.example"}


# --- MYOB's answers --------------------------------------------------------------------------


def _errors(name: str, message: str, details: str = "") -> str:
    return json.dumps(
        {"Errors": [{"Name": name, "Message": message, "AdditionalDetails": details,
                     "ErrorCode": None, "Severity": "Error"}]}
    )  # fmt: skip


def test_myobs_error_body_is_read_in_its_own_words() -> None:
    body = _errors("Required", "LastName is required")
    assert provider_message(body) == "LastName is required (Required)"


def _forbidden(body: str) -> AuthError:
    return AuthError(
        "GET /x answered 403",
        status=403,
        body_excerpt=body,
        request="GET /x",
        provider_message=provider_message(body),
    )


def test_a_403_over_the_per_second_limit_is_a_rate_limit_of_a_second() -> None:
    body = _errors(
        "RateLimitError", "API key has exceeded the per second rate limit", "x-myobapi-key"
    )
    limited = _rate_limited(_forbidden(body))
    assert isinstance(limited, RateLimitedError)
    assert limited.transient
    assert limited.reason == "rate_limited"
    assert limited.retry_after == 1.0


def test_a_403_over_the_daily_limit_waits_longer() -> None:
    body = _errors("RateLimitError", "API key has exceeded the daily rate limit")
    limited = _rate_limited(_forbidden(body))
    assert limited is not None
    assert limited.retry_after == DAILY_PAUSE_SECONDS


def test_any_other_403_stays_an_authorisation_failure() -> None:
    assert _rate_limited(_forbidden(_errors("DeveloperInactive", "API key is missing"))) is None


async def test_the_caller_waits_out_a_403_rate_limit_like_a_429() -> None:
    """Before RateLimitedError, MYOB's 403 was an AuthError: a non-retryable dead letter."""
    handle = handle_for(connection_info("myob", SETTINGS))
    body = _errors("RateLimitError", "API key has exceeded the per second rate limit")
    limited = _rate_limited(_forbidden(body))

    async def call(client: object) -> None:
        assert limited is not None
        raise limited

    with pytest.raises(CallFailedError) as caught:
        await attempt(handle, call, max_wait_seconds=0)
    assert caught.value.reason == "rate_limited"
    assert caught.value.retryable
    assert caught.value.retry_after == 1.0
