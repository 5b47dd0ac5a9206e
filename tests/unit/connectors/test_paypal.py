"""PayPal: the offline signature check with a locally made certificate chain (no
network), and the mapping both ways."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.base import DocumentRefusedError, SignatureError, WebhookRequest
from connectors.paypal import CONNECTOR
from connectors.paypal.mapping import Mapper
from connectors.paypal.signature import (
    PayPalScheme,
    check_cert_url,
    crc32_decimal,
    load_anchors,
    verify_transmission,
)
from connectors.paypal.simulator import issue_chain
from connectors.spec import MappingError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "paypal"
WEBHOOK_ID = "1JE4291016473214C"
CERT_URL = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270"
NOW = datetime(2026, 12, 6, tzinfo=UTC)
BODY = json.dumps(json.loads((FIXTURES / "capture_completed.json").read_text())["body"]).encode()
MAPPER = Mapper()

CA_PEM, LEAF_PEM, KEY = issue_chain(valid_from=NOW - timedelta(days=30))
OTHER_CA_PEM, OTHER_LEAF_PEM, OTHER_KEY = issue_chain(valid_from=NOW - timedelta(days=30))
ANCHORS = load_anchors(CA_PEM)


def _sign(key: rsa.RSAPrivateKey, body: bytes, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
    """The headers PayPal sends, signed as its docs say: written here with cryptography
    directly, not with the code under test."""
    transmission_id, when = "69cd13f0-d67a-11e5-baa3-778b53f4ae55", "2026-12-06T00:00:00Z"
    crc = zlib.crc32(body) & 0xFFFFFFFF
    message = f"{transmission_id}|{when}|{webhook_id}|{crc}".encode()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "paypal-transmission-id": transmission_id,
        "paypal-transmission-time": when,
        "paypal-transmission-sig": base64.b64encode(signature).decode(),
        "paypal-cert-url": CERT_URL,
        "paypal-auth-algo": "SHA256withRSA",
    }


def _request(headers: dict[str, str], body: bytes = BODY) -> WebhookRequest:
    return WebhookRequest("POST", "https://hooks.example.com/webhooks/paypal/x", headers, body)


def _verify(
    request: WebhookRequest,
    chain: bytes = LEAF_PEM,
    *,
    ids: list[str] | None = None,
    at: datetime = NOW,
) -> str:
    verified = verify_transmission(
        request, ids or [WEBHOOK_ID], at.timestamp(), chain_pem=chain, anchors=ANCHORS
    )
    return verified.provider_event_id


def _reason(call: object) -> str:
    assert callable(call)
    with pytest.raises(SignatureError) as caught:
        call()
    return caught.value.reason


def test_crc32_is_written_unsigned_in_decimal() -> None:
    assert crc32_decimal(b"hello") == "907060870"
    # A CRC32 with the top bit set (0xE8B7BE43) is not negative in PayPal's string, as a
    # signed 32-bit reading (Java's, say) would make it.
    assert crc32_decimal(b"a") == "3904355907"


def test_verifies_a_delivery_signed_by_a_certificate_that_chains_to_the_anchor() -> None:
    assert _verify(_request(_sign(KEY, BODY))) == "WH-58D329510W468432D-8HN650336L201105X"


def test_the_webhook_id_is_signed_so_another_subscriptions_delivery_fails() -> None:
    request = _request(_sign(KEY, BODY, webhook_id="8PT597110X687430LKGECATA"))
    assert _reason(lambda: _verify(request)) == "bad_signature"


def test_a_second_configured_webhook_id_verifies() -> None:
    request = _request(_sign(KEY, BODY, webhook_id="NEWWEBHOOKID0001"))
    verified = verify_transmission(
        request,
        [WEBHOOK_ID, "NEWWEBHOOKID0001"],
        NOW.timestamp(),
        chain_pem=LEAF_PEM,
        anchors=ANCHORS,
    )
    assert verified.secret_index == 1


def test_a_changed_body_fails_its_crc() -> None:
    request = _request(_sign(KEY, BODY), body=BODY.replace(b"30.00", b"3000.00"))
    assert _reason(lambda: _verify(request)) == "bad_signature"


def test_a_certificate_from_another_ca_is_refused() -> None:
    request = _request(_sign(OTHER_KEY, BODY))
    assert _reason(lambda: _verify(request, OTHER_LEAF_PEM)) == "bad_certificate"


def test_an_expired_certificate_is_refused() -> None:
    request = _request(_sign(KEY, BODY))
    assert _reason(lambda: _verify(request, at=NOW + timedelta(days=400))) == "bad_certificate"


def test_a_certificate_not_for_paypals_signing_service_is_refused() -> None:
    ca, leaf, key = issue_chain("www.example.com", valid_from=NOW - timedelta(days=1))
    request = _request(_sign(key, BODY))
    with pytest.raises(SignatureError, match="not PayPal's signing one"):
        verify_transmission(
            request, [WEBHOOK_ID], NOW.timestamp(), chain_pem=leaf, anchors=load_anchors(ca)
        )


def test_a_bundle_keeps_its_usable_anchors_past_a_bad_one() -> None:
    junk = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    anchors = load_anchors(junk + CA_PEM)
    assert len(anchors) == 1
    with pytest.raises(ValueError, match="no certificate"):
        load_anchors(junk)


def test_a_document_that_is_not_a_certificate_is_refused() -> None:
    request = _request(_sign(KEY, BODY))
    assert _reason(lambda: _verify(request, b"<html>moved</html>")) == "bad_certificate"


@pytest.mark.parametrize(
    "url",
    [
        "https://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1",
        "https://api-m.paypal.com/v1/notifications/certs/CERT-1",
    ],
)
def test_certificates_on_paypal_hosts_over_https_are_fetched(url: str) -> None:
    check_cert_url(url, allow_private=False)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/cert",
        "https://evilpaypal.com/cert",
        "https://user@api.paypal.com/cert",
        "http://127.0.0.1:9000/cert",
        "http://169.254.169.254/latest/meta-data",
        "not a url",
    ],
)
def test_a_certificate_url_off_paypals_hosts_is_refused(url: str) -> None:
    with pytest.raises(SignatureError) as caught:
        check_cert_url(url, allow_private=False)
    assert caught.value.reason == "bad_certificate"


def test_the_simulator_on_loopback_is_allowed_only_where_private_urls_are() -> None:
    check_cert_url("http://127.0.0.1:9000/cert", allow_private=True)
    with pytest.raises(SignatureError):
        check_cert_url("https://www.example.com/cert", allow_private=True)


@pytest.mark.parametrize(
    ("drop", "reason"),
    [
        ("paypal-cert-url", "missing_header"),
        ("paypal-transmission-sig", "missing_header"),
        ("paypal-transmission-id", "missing_header"),
    ],
)
def test_missing_headers_are_named(drop: str, reason: str) -> None:
    headers = {k: v for k, v in _sign(KEY, BODY).items() if k != drop}
    assert _reason(lambda: _verify(_request(headers))) == reason


def test_another_algorithm_is_malformed() -> None:
    headers = {**_sign(KEY, BODY), "paypal-auth-algo": "SHA1withRSA"}
    assert _reason(lambda: _verify(_request(headers))) == "malformed_header"


@dataclass
class FakeDocuments:
    """A DocumentFetcher over a dict (the HTTP side is tested against the simulator)."""

    documents: dict[str, bytes]
    allow_private: bool = False
    trust_anchors_pem: bytes | None = None
    asked: list[str] = field(default_factory=list)

    async def get(self, url: str) -> bytes:
        self.asked.append(url)
        if url not in self.documents:
            raise DocumentRefusedError(f"GET {url} answered 404")
        return self.documents[url]


async def test_verify_fetching_uses_the_connections_trust_anchors() -> None:
    fetch = FakeDocuments({CERT_URL: LEAF_PEM})
    settings = {"paypal_trust_anchors": CA_PEM.decode()}
    verified = await PayPalScheme().verify_fetching(
        _request(_sign(KEY, BODY)), [WEBHOOK_ID], NOW.timestamp(), settings, fetch
    )
    assert verified.provider_event_id.startswith("WH-")
    assert fetch.asked == [CERT_URL]


async def test_verify_fetching_falls_back_to_the_operators_anchors() -> None:
    fetch = FakeDocuments({CERT_URL: LEAF_PEM}, trust_anchors_pem=CA_PEM)
    await PayPalScheme().verify_fetching(
        _request(_sign(KEY, BODY)), [WEBHOOK_ID], NOW.timestamp(), {}, fetch
    )


async def test_without_any_trust_anchor_nothing_verifies() -> None:
    fetch = FakeDocuments({CERT_URL: LEAF_PEM})
    with pytest.raises(SignatureError, match="no trust anchor"):
        await PayPalScheme().verify_fetching(
            _request(_sign(KEY, BODY)), [WEBHOOK_ID], NOW.timestamp(), {}, fetch
        )


async def test_a_certificate_url_off_paypal_is_never_fetched() -> None:
    fetch = FakeDocuments({})
    headers = {**_sign(KEY, BODY), "paypal-cert-url": "https://attacker.example/cert.pem"}
    with pytest.raises(SignatureError, match="bad_certificate"):
        await PayPalScheme().verify_fetching(
            _request(headers),
            [WEBHOOK_ID],
            NOW.timestamp(),
            {"paypal_trust_anchors": CA_PEM.decode()},
            fetch,
        )
    assert fetch.asked == []


async def test_a_certificate_the_host_refuses_fails_verification() -> None:
    fetch = FakeDocuments({}, trust_anchors_pem=CA_PEM)
    with pytest.raises(SignatureError, match="bad_certificate"):
        await PayPalScheme().verify_fetching(
            _request(_sign(KEY, BODY)), [WEBHOOK_ID], NOW.timestamp(), {}, fetch
        )


def test_the_sync_verify_cannot_pass_without_the_certificate() -> None:
    assert _reason(
        lambda: CONNECTOR.scheme.verify(_request(_sign(KEY, BODY)), [WEBHOOK_ID], 0)
    ) == ("bad_certificate")


# --- mapping ------------------------------------------------------------------------------


def _event(name: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / name).read_text())["body"]).encode()


def test_an_invoice_event_carries_its_recipient_its_recorded_payments_and_names_its_invoice() -> (
    None
):
    """The invoice itself is hydrated, not taken from the event: PayPal creates an invoice as
    a draft and sends it in a second call, and the creation's event carries the draft."""
    parsed = MAPPER.parse_webhook(_event("invoice_updated.json"), {}, {})
    customer, invoice, payment = parsed.items
    assert (customer.entity_type, customer.external_id) == ("customer", "bill-me@example.com")
    assert customer.record is not None
    assert customer.record.data["name"] == "Stephanie Meyers"
    assert customer.record.data["address"]["city"] == "Anytown"
    assert (invoice.entity_type, invoice.external_id) == ("invoice", "INV2-Z56S-5LLA-Q52L-CPZ5")
    assert invoice.record is None
    body = json.loads((FIXTURES / "invoice_updated.json").read_text())["body"]
    held = MAPPER.to_canonical("invoice", body["resource"]["invoice"], {})
    assert held.refs == {"customer_id": "bill-me@example.com"}
    assert held.data == {
        "number": "#123",
        "status": "open",
        "currency": "USD",
        "issued_on": "2018-11-12",
        "due_on": "2018-11-22",
        "lines": [
            {"description": "Yoga Mat", "quantity": "1", "unit_amount": 5000, "tax_amount": 363},
            {"description": "Yoga t-shirt", "quantity": "1", "unit_amount": 1000, "tax_amount": 73},
        ],
        "subtotal": 6000,
        "tax": 436,
        "total": 6436,
        "amount_due": 5436,
    }
    assert payment.external_id == "INV2-Z56S-5LLA-Q52L-CPZ5:EXTR-86F38350LX4353815"
    assert payment.record is not None
    assert payment.record.refs == {"invoice_id": "INV2-Z56S-5LLA-Q52L-CPZ5"}
    assert payment.record.data == {
        "amount": 1000,
        "currency": "USD",
        "status": "succeeded",
        "method": "bank_transfer",
        "reference": "Deposit",
        "paid_at": "2018-11-15T00:00:00Z",
    }
    assert len({i.event_id for i in parsed.items}) == 3


def test_a_capture_event_is_thin_and_a_refund_names_its_capture() -> None:
    (capture,) = MAPPER.parse_webhook(_event("capture_completed.json"), {}, {}).items
    assert (capture.entity_type, capture.external_id, capture.record) == (
        "payment",
        "42311647XV020574X",
        None,
    )
    (refund,) = MAPPER.parse_webhook(_event("capture_refunded.json"), {}, {}).items
    assert (refund.external_id, refund.record) == ("0JF852973C016714D", None)


def test_a_capture_reads_as_a_payment_and_refunded_when_refunded() -> None:
    resource = json.loads(_event("capture_completed.json"))["resource"]
    record = MAPPER.to_canonical("payment", {**resource, "paypal_invoice_id": "INV2-1"}, {})
    assert record.data["status"] == "succeeded"
    assert (record.data["amount"], record.data["currency"]) == (3000, "USD")
    assert record.refs == {"invoice_id": "INV2-1"}
    refunded = MAPPER.to_canonical("payment", {**resource, "status": "REFUNDED"}, {})
    assert refunded.data["status"] == "refunded"


def test_an_invoice_is_written_in_invoicing_v2_shape() -> None:
    data = {
        "number": "CV-1",
        "status": "open",
        "currency": "JPY",
        "issued_on": "2026-12-01",
        "due_on": "2026-12-31",
        "lines": [{"description": "Work", "quantity": "2", "unit_amount": 1500, "tax_amount": 300}],
    }
    body = MAPPER.from_canonical("invoice", data, {"customer_id": "a@example.com"}, {})
    assert body["detail"] == {
        "invoice_number": "CV-1",
        "currency_code": "JPY",
        "invoice_date": "2026-12-01",
        "payment_term": {"due_date": "2026-12-31"},
    }
    assert body["primary_recipients"] == [{"billing_info": {"email_address": "a@example.com"}}]
    # JPY has no minor unit: 1500 yen is "1500", not "15.00".
    assert body["items"] == [
        {
            "name": "Work",
            "quantity": "2",
            "unit_amount": {"currency_code": "JPY", "value": "1500"},
            "tax": {"name": "Tax", "percent": "10"},
        }
    ]
    assert body["send"] is True


def test_a_payment_is_recorded_on_the_invoice_it_names() -> None:
    body = MAPPER.from_canonical(
        "payment",
        {
            "amount": 1050,
            "currency": "AUD",
            "status": "succeeded",
            "paid_at": "2026-12-02T01:00:00Z",
            "reference": "R",
        },
        {"invoice_id": "INV2-1"},
        {},
    )
    assert body == {
        "invoice_id": "INV2-1",
        "method": "OTHER",
        "amount": {"currency_code": "AUD", "value": "10.50"},
        "payment_date": "2026-12-02",
        "note": "R",
    }
    with pytest.raises(MappingError, match="records a payment on an invoice"):
        MAPPER.from_canonical("payment", {"amount": 1, "currency": "AUD"}, {}, {})


def test_amounts_finer_than_the_currency_are_refused() -> None:
    invoice = json.loads(_event("invoice_updated.json"))["resource"]["invoice"]
    invoice["amount"]["value"] = "64.365"
    with pytest.raises(MappingError, match="more places than USD has"):
        MAPPER.to_canonical("invoice", invoice, {})


def test_a_recipient_with_an_email_alone_does_not_erase_the_customers_name() -> None:
    """An invoice's recipient is often an email alone; mapped with name None, it erased the
    customer's name in every system (seen in the all-provider demo)."""
    body = json.loads((FIXTURES / "invoice_updated.json").read_text())["body"]
    recipient = body["resource"]["invoice"]["primary_recipients"][0]["billing_info"]
    body["resource"]["invoice"]["primary_recipients"][0]["billing_info"] = {
        "email_address": recipient["email_address"]
    }
    customer = MAPPER.parse_webhook(json.dumps(body).encode(), {}, {}).items[0]
    assert customer.record is not None
    assert customer.record.data == {"email": "bill-me@example.com"}
