"""Shopify specifics: the webhook id header is the dedup key when present."""

from __future__ import annotations

import hashlib

from connectors.base import WebhookRequest
from connectors.shopify import CONNECTOR
from tests.signing import sign

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


def test_keeps_topic_shop_and_webhook_id_headers() -> None:
    assert set(CONNECTOR.kept_headers) == {
        "content-type",
        "x-shopify-topic",
        "x-shopify-shop-domain",
        "x-shopify-webhook-id",
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
