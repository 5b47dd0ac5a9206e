"""A provider that records only money received holds a pending payment back until it has
succeeded (ApiSpec.holds_back), as Xero does, instead of refusing it into a dead letter:
the all-provider demo parked a Stripe card payment's pending version as a
schema_violation at MYOB, Square, PayPal and Shopify, then pushed the succeeded one."""

from __future__ import annotations

import pytest

from connectors.registry import connector


@pytest.mark.parametrize("provider", ["myob", "square", "paypal", "shopify", "xero"])
def test_a_pending_payment_waits_until_it_has_succeeded(provider: str) -> None:
    api = connector(provider).api
    assert api is not None
    assert api.holds_back is not None
    why = api.holds_back("payment", {"status": "pending", "amount": 100})
    assert why is not None
    assert "pending" in why
    assert api.holds_back("payment", {"status": "succeeded", "amount": 100}) is None
    assert api.holds_back("payment", {"amount": 100}) is None  # a change without its status
    assert api.holds_back("customer", {"status": "pending"}) is None
