"""Provider slug -> its simulator: the one place test and demo code finds a simulator.

Simulators are test and demo servers (DESIGN: production code never imports them), so
they are not part of a connector's ``Connector``: only ``crmsync simulate``, the demo,
bench/ and the tests import this module, and an import contract in pyproject.toml keeps
the services, the registry, the runtime and the connectors' own modules away from it.
Each simulator still lives beside its connector (``connectors/<slug>/simulator.py``).
"""

from __future__ import annotations

from functools import cache

from connectors.ascora.simulator import AscoraSimulator
from connectors.generic import CATALOGUE
from connectors.generic.simulator import AcmeSimulator, load_simulated
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.paypal.simulator import PayPalSimulator
from connectors.quickbooks.simulator import QuickBooksSimulator
from connectors.shopify.simulator import ShopifySimulator
from connectors.simkit import Simulator
from connectors.square.simulator import SquareSimulator
from connectors.stripe.simulator import StripeSimulator
from connectors.xero.simulator import XeroSimulator

SIMULATORS: dict[str, type[Simulator]] = {
    "ascora": AscoraSimulator,
    "xero": XeroSimulator,
    "stripe": StripeSimulator,
    "quickbooks": QuickBooksSimulator,
    "hubspot": HubSpotSimulator,
    "paypal": PayPalSimulator,
    "square": SquareSimulator,
    "shopify": ShopifySimulator,
    # A generic connection is whatever its mapping file says; AcmeCRM is the CRM the
    # example mapping (connectors/generic/examples/acme.json) describes.
    "generic": AcmeSimulator,
}


def simulator_for(slug: str) -> type[Simulator]:
    """The simulator class of provider ``slug``, or of a provider connected by a mapping
    file we ship (``connectors.generic.CATALOGUE``: mailchimp, mautic, woocommerce,
    freshbooks); ValueError for a provider without one (the webhook-only Standard Webhooks,
    ``internal``, an unknown slug)."""
    if slug in CATALOGUE:
        return _catalogue_simulator(slug)
    try:
        return SIMULATORS[slug]
    except KeyError:
        raise ValueError(f"provider {slug} has no simulator") from None


@cache
def _catalogue_simulator(name: str) -> type[Simulator]:
    # Built from the files on first use, once: nothing is read when this module loads.
    return load_simulated(CATALOGUE[name])
