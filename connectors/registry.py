"""Provider slugs and the connector behind each; the one place a slug is resolved."""

from __future__ import annotations

from pathlib import Path

from connectors import (
    ascora,
    hubspot,
    myob,
    paypal,
    quickbooks,
    shopify,
    square,
    standard_webhooks,
    stripe,
    xero,
)
from connectors.base import Connector
from connectors.capabilities import GENERIC, INTERNAL, Capabilities, generic_capabilities
from connectors.generic import (
    CATALOGUE,
    EXAMPLES,
    GenericSchemeConfig,
    connector_for,
    load_mapping_file,
)
from schemas.errors import RefuseInput

PROVIDERS: tuple[str, ...] = (
    "stripe",
    "xero",
    "quickbooks",
    "hubspot",
    "shopify",
    "ascora",
    "paypal",
    "square",
    "myob",
    "standard-webhooks",
    "generic",
    "internal",
)
# Providers that send no webhooks: their changes are polled (MYOB).
POLLED_PROVIDERS: tuple[str, ...] = ("myob",)
# "internal" services publish through POST /v1/changes with an API key, never webhooks.
WEBHOOK_PROVIDERS: tuple[str, ...] = tuple(
    p for p in PROVIDERS if p != "internal" and p not in POLLED_PROVIDERS
)

_FIXED: dict[str, Connector] = {
    c.slug: c
    for c in (
        stripe.CONNECTOR,
        xero.CONNECTOR,
        quickbooks.CONNECTOR,
        hubspot.CONNECTOR,
        shopify.CONNECTOR,
        ascora.CONNECTOR,
        paypal.CONNECTOR,
        square.CONNECTOR,
        myob.CONNECTOR,
        standard_webhooks.CONNECTOR,
    )
}


# What each provider does per record kind, in PROVIDERS order: the README's matrix
# (connectors.capabilities.matrix, ``crmsync connectors matrix``).
CAPABILITIES: dict[str, Capabilities] = {
    "stripe": stripe.CAPABILITIES,
    "xero": xero.CAPABILITIES,
    "quickbooks": quickbooks.CAPABILITIES,
    "hubspot": hubspot.CAPABILITIES,
    "shopify": shopify.CAPABILITIES,
    "ascora": ascora.CAPABILITIES,
    "paypal": paypal.CAPABILITIES,
    "square": square.CAPABILITIES,
    "myob": myob.CAPABILITIES,
    "standard-webhooks": standard_webhooks.CAPABILITIES,
    "generic": GENERIC,
    "internal": INTERNAL,
}


# The mapping files we ship, by the name the matrix gives them: the catalogue's
# ``--provider`` names, and the generic connector's own example.
MAPPING_FILES: dict[str, Path] = {"generic: `acme.json`": EXAMPLES / "acme.json", **CATALOGUE}


def documented_capabilities() -> dict[str, Capabilities]:
    """Every provider's rows for the README's matrix: the declared ones, with the rows
    each shipped mapping file gives right after generic's."""
    rows: dict[str, Capabilities] = {}
    for slug, capabilities in CAPABILITIES.items():
        rows[slug] = capabilities
        if slug == "generic":
            for name, path in MAPPING_FILES.items():
                rows[name] = generic_capabilities(load_mapping_file(path)[1])
    return rows


class UnknownProviderError(RefuseInput, KeyError):
    """The slug names no provider with a connector (``internal`` has none)."""

    def __init__(self, slug: str) -> None:
        super().__init__(slug)
        self.slug = slug

    def __str__(self) -> str:
        return f"no connector for provider {self.slug!r}"


def connector(slug: str, generic_config: GenericSchemeConfig | None = None) -> Connector:
    """The connector for ``slug``; ``generic`` needs its connection's ``generic_config``.

    Passing a config for any other slug is a ValueError too: it would be silently ignored,
    which hides a connection stored with the wrong provider.
    """
    if slug == "generic":
        if generic_config is None:
            raise ValueError("the generic provider needs a GenericSchemeConfig")
        return connector_for(generic_config)
    if slug not in _FIXED:
        raise UnknownProviderError(slug)
    if generic_config is not None:
        raise ValueError(f"generic_config applies only to the generic provider, not {slug!r}")
    return _FIXED[slug]
