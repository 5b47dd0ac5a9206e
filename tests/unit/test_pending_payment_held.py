"""A card payment is pending at Stripe for a moment before it succeeds (its
``payment_intent.created`` Event, then ``payment_intent.succeeded``): an intermediate
state, not something a target that records money received can be given (issue 17).

MYOB, Square, Shopify and PayPal refuse a pending payment in their mapping; pushed in that
moment it was a ``schema_violation`` dead letter that no later version clears (the
all-provider demo failed so in 5 of 14 runs: 4 of 10 with Stripe's look before an update
on, 1 of 4 with it off; issue 17's notes took it for the look's). Like Xero, Ascora and
QuickBooks they now hold
it back (``ApiSpec.holds_back``): nothing is sent, the sync log says ``held``, and the
succeeded version is pushed when it comes."""

from __future__ import annotations

import pytest

from connectors.registry import connector

PENDING = {"amount": 28350, "currency": "AUD", "status": "pending", "method": "card"}


@pytest.mark.parametrize("provider", ["myob", "square", "shopify", "paypal"])
def test_a_pending_payment_waits_until_it_succeeds(provider: str) -> None:
    api = connector(provider).api
    assert api is not None
    assert api.holds_back is not None
    why = api.holds_back("payment", PENDING)
    assert why is not None
    assert "pending" in why
    assert api.holds_back("payment", {**PENDING, "status": "succeeded"}) is None
    # What a target refuses for good (a failed or refunded payment) is still its mapping's
    # dead letter: held back, it would wait for a success that never comes.
    assert api.holds_back("payment", {**PENDING, "status": "failed"}) is None
