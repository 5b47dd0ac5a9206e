"""Slug resolution: every webhook provider has a connector, nothing else does."""

from __future__ import annotations

import pytest

from connectors import standard_webhooks
from connectors.base import SignatureError, WebhookRequest
from connectors.generic import GenericSchemeConfig
from connectors.registry import (
    POLLED_PROVIDERS,
    PROVIDERS,
    WEBHOOK_PROVIDERS,
    UnknownProviderError,
    connector,
)

CONFIG = GenericSchemeConfig(signature_header="x-sig")
# Providers whose dashboard issues the secret (we only store it).
PROVIDER_ISSUED = {"stripe", "xero", "quickbooks", "hubspot", "shopify", "square", "paypal"}


def test_webhook_providers_are_all_providers_but_internal_and_the_polled_ones() -> None:
    assert PROVIDERS[-1] == "internal"
    assert tuple(p for p in PROVIDERS[:-1] if p not in POLLED_PROVIDERS) == WEBHOOK_PROVIDERS


@pytest.mark.parametrize("slug", POLLED_PROVIDERS)
def test_a_polled_provider_has_a_connector_with_a_poll_interval_and_no_webhooks(
    slug: str,
) -> None:
    conn = connector(slug)
    assert conn.slug == slug
    assert not conn.webhooks
    assert conn.api is not None
    assert conn.api.poll_seconds is not None
    assert conn.api.poll_seconds > 0
    with pytest.raises(SignatureError, match="no webhooks"):
        conn.scheme.verify(WebhookRequest("POST", "https://x.test/", {}, b"{}"), ["s"], 0.0)
    with pytest.raises(ValueError, match="no webhook secret"):
        conn.scheme.generate_secret()


@pytest.mark.parametrize("slug", WEBHOOK_PROVIDERS)
def test_every_webhook_provider_resolves_to_its_connector(slug: str) -> None:
    conn = connector(slug, CONFIG if slug == "generic" else None)
    assert conn.slug == slug
    assert conn.scheme.issues_own_secret is (slug in PROVIDER_ISSUED)


def test_standard_webhooks_slug_maps_to_its_package() -> None:
    assert connector("standard-webhooks") is standard_webhooks.CONNECTOR


@pytest.mark.parametrize("slug", ["internal", "salesforce", "Stripe", ""])
def test_rejects_slugs_without_webhooks(slug: str) -> None:
    with pytest.raises(UnknownProviderError) as caught:
        connector(slug)
    assert isinstance(caught.value, KeyError)
    assert caught.value.slug == slug


def test_generic_needs_its_configuration() -> None:
    with pytest.raises(ValueError, match="GenericSchemeConfig"):
        connector("generic")


def test_rejects_generic_configuration_for_another_provider() -> None:
    with pytest.raises(ValueError, match="only to the generic provider"):
        connector("stripe", CONFIG)
