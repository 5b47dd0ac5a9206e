"""Square: the signature over the notification URL and body, and the mapping both ways."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.spec import MappingError
from connectors.square import CONNECTOR
from connectors.square.client import idempotency_key
from connectors.square.mapping import Mapper

# The vector in Square's official SDKs' WebhooksHelper tests (Python, Node, Java, Go, PHP).
SDK_BODY = (
    b'{"merchant_id":"MLEFBHHSJGVHD","type":"webhooks.test_notification",'
    b'"event_id":"ac3ac95b-f97d-458c-a6e6-18981597e05f",'
    b'"created_at":"2022-07-13T20:30:59.037339943Z",'
    b'"data":{"type":"webhooks","id":"bc368e64-01aa-407e-b46e-3231809b1129"}}'
)
SDK_SIGNATURE = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4="
SDK_KEY = "Ibxx_5AKakO-3qeNVR61Dw"
SDK_URL = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9"
FIXTURES = Path(__file__).parents[2] / "fixtures" / "square"
MAPPER = Mapper()


def _request(
    url: str = SDK_URL, body: bytes = SDK_BODY, signature: str = SDK_SIGNATURE
) -> WebhookRequest:
    return WebhookRequest("POST", url, {"x-square-hmacsha256-signature": signature}, body)


def _event(name: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / name).read_text())["body"]).encode()


def test_verifies_squares_sdk_vector_and_dedups_on_its_event_id() -> None:
    verified = CONNECTOR.scheme.verify(_request(), [SDK_KEY], now=0)
    assert verified.secret_index == 0
    assert verified.provider_event_id == "ac3ac95b-f97d-458c-a6e6-18981597e05f"


def test_the_notification_url_is_part_of_what_is_signed() -> None:
    with pytest.raises(SignatureError) as caught:
        CONNECTOR.scheme.verify(_request(url=SDK_URL + "/other"), [SDK_KEY], now=0)
    assert caught.value.reason == "bad_signature"


def test_a_rotated_key_verifies_as_the_second_secret() -> None:
    verified = CONNECTOR.scheme.verify(_request(), ["a-new-key", SDK_KEY], now=0)
    assert verified.secret_index == 1


def test_a_changed_body_does_not_verify() -> None:
    with pytest.raises(SignatureError, match="bad_signature"):
        CONNECTOR.scheme.verify(_request(body=SDK_BODY + b" "), [SDK_KEY], now=0)


def test_customer_event_carries_the_whole_customer() -> None:
    parsed = MAPPER.parse_webhook(_event("customer_updated.json"), {}, {})
    (item,) = parsed.items
    assert item.event_id == "914c6b3a-b4bd-4b66-8a8e-6a6e7d8c2c1d"
    assert item.record is not None
    assert item.record.version == "2"
    assert item.record.data == {
        "name": "Jane Doe",
        "email": "jane.doe@example.com",
        "phone": "+1-510-555-0123",
        "company": None,
        "notes": "a customer",
        "address": {
            "line1": "1955 Broadway",
            "line2": "Suite 600",
            "city": "Oakland",
            "region": "CA",
            "postal_code": "94612",
            "country": "US",
        },
    }


def test_invoice_and_payment_events_are_thin() -> None:
    for name, kind in (("invoice_published.json", "invoice"), ("payment_updated.json", "payment")):
        (item,) = MAPPER.parse_webhook(_event(name), {}, {}).items
        assert item.entity_type == kind
        assert item.record is None


def test_an_event_type_we_do_not_sync_is_counted_as_ignored() -> None:
    body = json.dumps({"type": "labor.shift.created", "event_id": "e1"}).encode()
    parsed = MAPPER.parse_webhook(body, {}, {})
    assert parsed.items == ()
    assert parsed.ignored == 1


def test_invoice_reads_status_lines_and_totals_from_invoice_and_order() -> None:
    invoice = json.loads((FIXTURES / "invoice_published.json").read_text())["body"]["data"][
        "object"
    ]["invoice"]
    order = {
        "id": invoice["order_id"],
        "line_items": [
            {
                "name": "Consulting",
                "quantity": "2",
                "base_price_money": {"amount": 4000, "currency": "USD"},
                "total_tax_money": {"amount": 2000, "currency": "USD"},
            }
        ],
        "total_money": {"amount": 10000, "currency": "USD"},
        "total_tax_money": {"amount": 2000, "currency": "USD"},
    }
    record = MAPPER.to_canonical("invoice", {"invoice": invoice, "order": order}, {})
    assert record.refs == {"customer_id": "JDKYHBWT1D4F8MFH63DBMEN8Y4"}
    assert record.data["status"] == "open"
    assert record.data["number"] == "inv-100"
    assert record.data["due_on"] == "2030-01-24"
    assert (record.data["subtotal"], record.data["tax"], record.data["total"]) == (
        8000,
        2000,
        10000,
    )
    assert record.data["amount_due"] == 10000
    assert record.data["lines"] == [
        {"description": "Consulting", "quantity": "2", "unit_amount": 4000, "tax_amount": 2000}
    ]


def test_a_fully_refunded_payment_reads_as_refunded() -> None:
    payment = json.loads((FIXTURES / "payment_updated.json").read_text())["body"]["data"]["object"][
        "payment"
    ]
    payment = {**payment, "refunded_money": {"amount": 1000, "currency": "USD"}}
    record = MAPPER.to_canonical("payment", {**payment, "invoice_id": "inv:1"}, {})
    assert record.data["status"] == "refunded"
    assert record.data["method"] == "card"
    assert record.refs == {"invoice_id": "inv:1", "customer_id": "JDKYHBWT1D4F8MFH63DBMEN8Y4"}


def test_invoice_is_written_as_an_order_and_the_invoice_on_it() -> None:
    data = {
        "number": "CV-1",
        "status": "open",
        "currency": "AUD",
        "issued_on": "2026-12-01",
        "due_on": "2026-12-31",
        "lines": [
            {"description": "Work", "quantity": "1.5", "unit_amount": 2000, "tax_amount": 300}
        ],
    }
    body = MAPPER.from_canonical("invoice", data, {"customer_id": "CUST1"}, {})
    assert body["publish"] is True
    assert body["cancel"] is False
    assert body["invoice"] == {
        "invoice_number": "CV-1",
        "sale_or_service_date": "2026-12-01",
        "payment_requests": [{"request_type": "BALANCE", "due_date": "2026-12-31"}],
        "primary_recipient": {"customer_id": "CUST1"},
    }
    (item,) = body["order"]["line_items"]
    assert item["quantity"] == "1.5"
    assert item["base_price_money"] == {"amount": 2000, "currency": "AUD"}
    # 300 of 3000 is 10 %, which Square's rate gives back exactly.
    assert item["taxes"] == [{"name": "Tax", "type": "ADDITIVE", "percentage": "10"}]


def test_a_line_tax_no_percentage_reproduces_is_refused() -> None:
    # 1 of 100,000,000 is 0.000001 %: Square's rate has too few places to say it.
    line = {"quantity": "1", "unit_amount": 100_000_000, "tax_amount": 1}
    data = {"currency": "AUD", "lines": [line]}
    with pytest.raises(MappingError, match="no percentage of 100000000 gives exactly 1"):
        MAPPER.from_canonical("invoice", data, {}, {})


def test_a_payment_is_written_as_money_received_outside_square() -> None:
    body = MAPPER.from_canonical(
        "payment",
        {"amount": 1500, "currency": "AUD", "status": "succeeded", "reference": "R-1"},
        {"invoice_id": "inv:9"},
        {},
    )
    assert body == {
        "amount_money": {"amount": 1500, "currency": "AUD"},
        "reference_id": "R-1",
        "invoice_id": "inv:9",
    }
    with pytest.raises(MappingError, match="COMPLETED only"):
        MAPPER.from_canonical("payment", {"status": "pending"}, {}, {})


def test_customer_round_trips_through_squares_fields() -> None:
    data = {"name": "Harbour Plumbing", "email": "ops@harbour.example", "phone": "+61 2 5550 0101"}
    body = MAPPER.from_canonical("customer", data, {}, {})
    stored = {"id": "C1", "updated_at": "2026-12-01T00:00:00Z", "version": 0, **body}
    assert MAPPER.to_canonical("customer", stored, {}).data == {
        **data,
        "company": None,
        "notes": None,
        "address": None,
    }


def test_idempotency_keys_fit_squares_45_characters() -> None:
    assert idempotency_key("short") == "short"
    long = idempotency_key("x" * 60, "order")
    assert len(long) == 45
    assert long == idempotency_key("x" * 60, "order") != idempotency_key("x" * 60, "invoice")
