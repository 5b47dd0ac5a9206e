"""Shopify: the webhook id header as the dedup key, webhooks by topic, the mapping both
ways, money and totals, and the paging and rate-limit headers the client reads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import WebhookRequest
from connectors.http import provider_message
from connectors.shopify import CONNECTOR
from connectors.shopify.client import call_limit, next_page_info, wait_for
from connectors.shopify.mapping import Mapper, decimal_text, split_payment_id, to_minor
from connectors.spec import MappingError
from tests.signing import sign

FIXTURES = Path(__file__).parents[2] / "fixtures" / "shopify"
MAPPER = Mapper()
SECRET = "shopify-app-client-secret"
BODY = b'{"id":820982911946154508}'
NOW = 1_700_000_000.0


def test_uses_the_webhook_id_header_as_event_id() -> None:
    headers = sign("shopify", SECRET, BODY, now=NOW, event_id="b54557e4-bdd9-4b37-8a5f")
    verified = CONNECTOR.scheme.verify(
        WebhookRequest("POST", "https://h", headers, BODY), [SECRET], NOW
    )
    assert verified.provider_event_id == "b54557e4-bdd9-4b37-8a5f"


def test_falls_back_to_body_hash_without_webhook_id() -> None:
    headers = sign("shopify", SECRET, BODY, now=NOW)
    del headers["x-shopify-webhook-id"]
    verified = CONNECTOR.scheme.verify(
        WebhookRequest("POST", "https://h", headers, BODY), [SECRET], NOW
    )
    assert verified.provider_event_id == "sha256:" + hashlib.sha256(BODY).hexdigest()


def test_keeps_the_headers_that_say_what_a_delivery_is() -> None:
    assert set(CONNECTOR.kept_headers) == {
        "content-type",
        "x-shopify-topic",
        "x-shopify-shop-domain",
        "x-shopify-webhook-id",
        "x-shopify-triggered-at",
        "x-shopify-api-version",
    }


def test_secret_comes_from_shopify() -> None:
    assert CONNECTOR.scheme.issues_own_secret is True


def test_falls_back_to_body_hash_when_webhook_id_is_not_utf8_text() -> None:
    # A surrogateescape-decoded header would break the envelope's serialisation later.
    headers = sign("shopify", SECRET, BODY, now=NOW, event_id="id-\udcff")
    verified = CONNECTOR.scheme.verify(
        WebhookRequest("POST", "https://h", headers, BODY), [SECRET], NOW
    )
    assert verified.provider_event_id == "sha256:" + hashlib.sha256(BODY).hexdigest()


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def _parse(name: str, **headers: str) -> Any:
    fixture = _fixture(name)
    return MAPPER.parse_webhook(
        json.dumps(fixture["body"]).encode(), {**fixture["headers"], **headers}, {}
    )


ORDER: dict[str, Any] = _fixture("orders_paid.json")["body"]
TRANSACTION: dict[str, Any] = _fixture("order_transactions_create.json")["body"]


def test_a_customer_webhook_is_the_whole_customer_keyed_by_its_webhook_id() -> None:
    parsed = _parse("customers_update.json")
    (item,) = parsed.items
    assert (item.entity_type, item.op, item.external_id) == (
        "customer",
        "upsert",
        "706405506930370084",
    )
    assert item.event_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd041"
    assert item.occurred_at.isoformat() == "2024-10-02T13:15:40+00:00"
    assert item.record is not None
    assert item.record.data["name"] == "Bob Biller"
    assert item.record.data["company"] == "Biller Ice Cream"
    assert item.record.data["address"]["country"] == "CA"


def test_an_order_is_an_invoice_whose_subtotal_and_tax_make_its_total() -> None:
    record = MAPPER.to_canonical("invoice", ORDER, {})
    data = record.data
    assert data["subtotal"] + data["tax"] == data["total"] == 43_780
    assert sum(line["unit_amount"] * int(line["quantity"]) for line in data["lines"]) == 39_800
    assert sum(line["tax_amount"] for line in data["lines"]) == data["tax"] == 3_980
    assert (data["status"], data["amount_due"], data["number"]) == ("paid", 0, "#9999")
    assert data["issued_on"] == "2024-10-01"  # the shop's own day, not UTC's
    assert record.refs == {"customer_id": "115310627314723954"}


def test_shipping_in_the_total_stays_in_the_subtotal_so_the_sum_holds() -> None:
    order = {**ORDER, "total_price": "447.80", "financial_status": "partially_paid"}
    order["total_outstanding"] = "100.00"
    data = MAPPER.to_canonical("invoice", order, {}).data
    assert (data["subtotal"], data["tax"], data["total"]) == (40_800, 3_980, 44_780)
    assert (data["status"], data["amount_due"]) == ("open", 10_000)


@pytest.mark.parametrize(
    ("financial", "cancelled", "status"),
    [
        ("pending", None, "open"),
        ("authorized", None, "open"),
        ("partially_paid", None, "open"),
        ("paid", None, "paid"),
        ("refunded", None, "paid"),
        ("voided", None, "void"),
        ("pending", "2024-10-02T10:00:00-04:00", "void"),
    ],
)
def test_financial_status_and_cancellation_say_the_invoice_status(
    financial: str, cancelled: str | None, status: str
) -> None:
    order = {**ORDER, "financial_status": financial, "cancelled_at": cancelled}
    data = MAPPER.to_canonical("invoice", order, {}).data
    assert data["status"] == status
    if status == "void":
        assert data["amount_due"] == 0


def test_an_invoice_maps_to_an_order_and_back_unchanged() -> None:
    canonical = MAPPER.to_canonical("invoice", ORDER, {})
    body = MAPPER.from_canonical("invoice", canonical.data, canonical.refs, {})
    order = body["order"]
    assert order["name"] == "#9999"
    assert order["customer"] == {"id": 115310627314723954}
    assert order["line_items"][0] == {
        "title": "IPod Nano - 8GB",
        "quantity": 1,
        "price": "199.00",
        "tax_lines": [{"title": "Tax", "price": "19.90", "rate": "0.1"}],
    }
    assert body["status"] == "paid"
    # What Shopify would hold of that body reads back as the same lines.
    stored = {**ORDER, "line_items": order["line_items"]}
    assert MAPPER.to_canonical("invoice", stored, {}).data["lines"] == canonical.data["lines"]


def test_a_fractional_quantity_is_refused_rather_than_rounded() -> None:
    data = {
        "currency": "AUD",
        "lines": [{"description": "Labour", "quantity": "1.5", "unit_amount": 1000}],
    }
    with pytest.raises(MappingError, match="whole, positive quantities"):
        MAPPER.from_canonical("invoice", data, {}, {})


def test_a_transaction_is_a_payment_named_by_its_order_and_its_own_id() -> None:
    (item,) = _parse("order_transactions_create.json").items
    assert item.external_id == "820982911946154508:120560818172775265"
    assert split_payment_id(item.external_id) == ("820982911946154508", "120560818172775265")
    assert item.record is not None
    assert item.record.refs == {"invoice_id": "820982911946154508"}
    assert item.record.data["amount"] == 43_780
    assert item.record.data["method"] == "bogus"
    assert item.record.data["paid_at"] == "2024-10-01T14:45:12Z"


def test_authorizations_and_refunds_are_not_payments() -> None:
    for kind in ("authorization", "void", "refund"):
        body = json.dumps({**TRANSACTION, "kind": kind}).encode()
        headers = _fixture("order_transactions_create.json")["headers"]
        assert MAPPER.parse_webhook(body, headers, {}).ignored == 1


def test_a_payment_maps_to_a_successful_external_sale() -> None:
    body = MAPPER.from_canonical(
        "payment",
        {"amount": 12_345, "currency": "AUD", "status": "succeeded", "reference": "EFT-9"},
        {"invoice_id": "42"},
        {},
    )
    assert body == {
        "transaction": {
            "kind": "sale",
            "status": "success",
            "source": "external",
            "amount": "123.45",
            "currency": "AUD",
            "gateway": "manual",
            "authorization": "EFT-9",
        },
        "order_id": "42",
    }
    with pytest.raises(MappingError, match="successful sale only"):
        MAPPER.from_canonical(
            "payment", {"amount": 1, "currency": "AUD", "status": "pending"}, {}, {}
        )


def test_a_customer_name_splits_at_the_last_space_and_joins_back() -> None:
    body = MAPPER.from_canonical("customer", {"name": "Mary Ann Smith"}, {}, {})
    assert (body["first_name"], body["last_name"]) == ("Mary Ann", "Smith")
    one = MAPPER.from_canonical("customer", {"name": "Cher"}, {}, {})
    assert (one["first_name"], one["last_name"]) == ("Cher", "")
    customer = {
        "id": 1,
        "updated_at": "2024-10-02T09:15:40-04:00",
        "first_name": body["first_name"],
        "last_name": body["last_name"],
    }
    assert MAPPER.to_canonical("customer", customer, {}).data["name"] == "Mary Ann Smith"


def test_deletes_carry_the_id_alone() -> None:
    headers = {
        "x-shopify-topic": "orders/delete",
        "x-shopify-webhook-id": "w-1",
        "x-shopify-triggered-at": "2024-10-02T13:15:40Z",
    }
    (item,) = MAPPER.parse_webhook(b'{"id": 820982911946154508}', headers, {}).items
    assert (item.entity_type, item.op, item.record) == ("invoice", "delete", None)


def test_an_unsynced_topic_is_ignored_and_without_a_webhook_id_the_body_hash_is_the_id() -> None:
    assert _parse("customers_update.json", **{"x-shopify-topic": "products/update"}).ignored == 1
    fixture = _fixture("customers_update.json")
    headers = {k: v for k, v in fixture["headers"].items() if k != "x-shopify-webhook-id"}
    body = json.dumps(fixture["body"]).encode()
    (item,) = MAPPER.parse_webhook(body, headers, {}).items
    # The same id ingest deduplicated the delivery on.
    assert item.event_id == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [("199.00", "USD", 19_900), ("1500", "JPY", 1_500), ("1.234", "KWD", 1_234)],
)
def test_money_scales_by_the_currencys_exponent_both_ways(
    text: str, currency: str, minor: int
) -> None:
    assert to_minor(text, currency, "x") == minor
    assert to_minor(decimal_text(minor, currency), currency, "x") == minor


def test_an_amount_finer_than_the_currency_is_refused() -> None:
    with pytest.raises(MappingError, match="more places"):
        to_minor("1.005", "USD", "total_price")


def test_the_next_page_is_the_link_headers_page_info() -> None:
    link = (
        "<https://shop.myshopify.com/admin/api/2024-10/customers.json?limit=250&page_info=abc>; "
        'rel="previous", <https://shop.myshopify.com/admin/api/2024-10/customers.json?'
        'limit=250&page_info=def>; rel="next"'
    )
    assert next_page_info(link) == "def"
    assert next_page_info(link.split(", ", maxsplit=1)[0]) is None
    assert next_page_info(None) is None


def test_the_call_limit_header_paces_the_client_before_the_bucket_fills() -> None:
    assert call_limit("32/40") == (32, 40)
    assert call_limit("junk") is None
    assert wait_for(30, 40) == 0.0
    # At 36/40 one more would leave fewer than 4 free: wait half a second (one leak).
    assert wait_for(36, 40) == 0.5
    assert wait_for(40, 40) == 2.5


def test_shopifys_errors_object_is_the_dead_letters_message() -> None:
    said = provider_message('{"errors": {"email": ["has already been taken"], "base": ["No"]}}')
    assert said == "email has already been taken; No"
    assert provider_message('{"errors": "Not Found"}') == "Not Found"
