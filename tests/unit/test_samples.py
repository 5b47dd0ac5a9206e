"""The sample webhooks ``crmsync trigger`` sends (connectors.samples): the same payloads
as the tests' fixtures, verified by the provider's own scheme once signed, and a new
delivery each time (the processor's dedup key differs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors import samples
from connectors.base import SignatureError, WebhookRequest
from connectors.registry import connector

ROOT = Path(__file__).resolve().parents[2]
URL = "https://hooks.example.com/webhooks/p/c?x=a%3Ab"
NOW = 1_800_000_000.0
SHIPPED = [(p, e) for p, events in samples.catalogue().items() for e in events]


def test_every_provider_with_samples_has_some() -> None:
    assert all(samples.catalogue()[p] for p in samples.PROVIDERS)


@pytest.mark.parametrize(("provider", "event"), SHIPPED)
def test_a_sample_is_its_fixture_body(provider: str, event: str) -> None:
    path = ROOT / "connectors" / provider / "samples" / f"{event}.json"
    shipped = json.loads(path.read_text())
    fixture = json.loads((ROOT / shipped["fixture"]).read_text())
    assert shipped["body"] == fixture["body"]
    assert shipped["event"] == event


@pytest.mark.parametrize(("provider", "event"), SHIPPED)
def test_a_signed_sample_verifies_and_is_a_new_delivery_each_time(
    provider: str, event: str
) -> None:
    scheme = connector(provider).scheme
    secret = scheme.generate_secret()
    sample = samples.load(provider, event)
    ids = set()
    for unique in ("0123456789abcdef", "fedcba9876543210"):
        delivery = samples.instance(sample, unique=unique, now=NOW)
        headers = samples.sign(provider, secret, delivery, url=URL, now=NOW)
        request = WebhookRequest(
            "POST", URL, {k.lower(): v for k, v in headers.items()}, delivery.body
        )
        verified = scheme.verify(request, [secret], NOW + 1)
        assert not verified.handshake
        ids.add(verified.provider_event_id)
        with pytest.raises(SignatureError, match="bad_signature"):
            scheme.verify(request, [scheme.generate_secret()], NOW + 1)
    assert len(ids) == 2


def test_the_fixtures_spelling_names_a_sample_too() -> None:
    assert samples.load("stripe", "customer_created").event == "customer.created"


@pytest.mark.parametrize(
    ("provider", "event", "says"),
    [
        ("stripe", "customer.exploded", "customer.created"),
        ("generic", "contact.updated", "no samples for provider 'generic'"),
        ("../etc", "passwd", "no samples for provider"),
    ],
)
def test_an_unknown_sample_names_what_there_is(provider: str, event: str, says: str) -> None:
    with pytest.raises(samples.UnknownSampleError, match=says):
        samples.load(provider, event)
