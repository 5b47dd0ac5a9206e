"""Sample webhooks of the built-in providers, as ``crmsync trigger`` sends them.

Each provider keeps its samples in ``connectors/<provider>/samples/<event>.json`` (package
data): the documented payloads of tests/fixtures/<provider>/ (a unit test keeps them the
same), each as ``{"event", "source", "description", "body"}``.

A sample is sent as a new delivery each time: :func:`instance` makes the ids the
processor deduplicates on unique per call and dates the event now, and :func:`sign` signs
it as the provider would. Pure: time and the unique part are passed in.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from connectors.hubspot import signature as hubspot
from connectors.quickbooks import signature as quickbooks
from connectors.shopify import signature as shopify
from connectors.standard_webhooks import signature as standard_webhooks
from connectors.stripe import signature as stripe
from connectors.xero import signature as xero
from schemas.errors import RefuseInput

_ROOT = Path(__file__).resolve().parent
# The providers with samples: the built-ins whose signing is fixed. A generic connection's
# scheme and payloads are its own, so there is no sample to send it.
PROVIDERS = ("ascora", "hubspot", "quickbooks", "shopify", "stripe", "xero")


class UnknownSampleError(RefuseInput):
    """No such provider or event among the samples; the message lists what there is."""


@dataclass(frozen=True)
class Sample:
    provider: str
    event: str
    description: str
    body: Any
    # Headers that say what the body is (Shopify's topic), sent with every delivery.
    headers: Mapping[str, str] = field(default_factory=dict)


def events(provider: str) -> list[str]:
    return sorted(
        p.name.removesuffix(".json") for p in (_ROOT / provider / "samples").glob("*.json")
    )


def catalogue() -> dict[str, list[str]]:
    """Every provider's sample events."""
    return {p: events(p) for p in PROVIDERS}


def load(provider: str, event: str) -> Sample:
    if provider not in PROVIDERS:
        raise UnknownSampleError(
            f"no samples for provider {provider!r}; there are for {', '.join(PROVIDERS)}"
        )
    known = events(provider)
    # customer_created names customer.created too: the fixtures' spelling.
    name = event if event in known else event.replace("_", ".", 1)
    if name not in known:
        raise UnknownSampleError(f"no {provider} sample {event!r}; there are {', '.join(known)}")
    data = json.loads((_ROOT / provider / "samples" / f"{name}.json").read_text())
    return Sample(provider, name, data["description"], data["body"], data.get("headers", {}))


@dataclass(frozen=True)
class Delivery:
    body: bytes
    # The id the processor deduplicates this delivery on, where the body or a header has one.
    delivery_id: str
    # Headers of this delivery beside its signature (a topic, a delivery id, a time).
    headers: Mapping[str, str] = field(default_factory=dict)


def instance(sample: Sample, *, unique: str, now: float) -> Delivery:
    """The sample as a new delivery: its event ids suffixed with ``unique`` and its event
    time ``now``, so the processor's dedup takes a second trigger for a new event. The
    records it names keep their ids: triggering twice updates the same record."""
    at = datetime.fromtimestamp(now, UTC)
    if sample.provider == "shopify":
        return _shopify(sample, unique, at)
    return _in_body(sample, unique, now, at)


def _in_body(sample: Sample, unique: str, now: float, at: datetime) -> Delivery:
    # Providers whose event ids and times are in the body.
    body = copy.deepcopy(sample.body)
    delivery_id = f"msg_{unique}"
    if sample.provider == "stripe":
        body["id"] = delivery_id = f"{body['id']}_{unique}"
        body["created"] = int(now)
    elif sample.provider == "ascora":
        body["timestamp"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    elif sample.provider == "xero":
        # Xero's body carries no delivery id (ingest hashes it): entropy is its random part.
        body["entropy"] = delivery_id = unique
        for event in body["events"]:
            event["eventDateUtc"] = at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    elif sample.provider == "quickbooks":
        stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(body, list):  # CloudEvents
            for event in body:
                event["id"] = f"{event['id']}-{unique}"
                event["time"] = stamp
        else:
            for note in body["eventNotifications"]:
                for entity in note["dataChangeEvent"]["entities"]:
                    entity["lastUpdated"] = stamp
            # Ingest hashes the classic body, which has no id of its own: one member more
            # (readers of the payload ignore what they do not know) makes it a new one.
            body["crmsyncTrigger"] = unique
        delivery_id = unique
    elif sample.provider == "hubspot":
        # eventId is a number; a sample's ids are offset by the unique part's.
        offset = int(unique[:12], 16) * 1000
        for event in body:
            event["eventId"] = event["eventId"] + offset
            event["occurredAt"] = int(now * 1000)
        delivery_id = ",".join(sorted(str(e["eventId"]) for e in body))
    return Delivery(json.dumps(body, separators=(",", ":")).encode(), delivery_id)


def _shopify(sample: Sample, unique: str, at: datetime) -> Delivery:
    # The body is the resource as it stands; what it is, the delivery's id and its time
    # travel in headers.
    headers = {
        **sample.headers,
        shopify.WEBHOOK_ID_HEADER: unique,
        "x-shopify-triggered-at": at.isoformat(),
        "x-shopify-shop-domain": "crmsync-trigger.myshopify.com",
    }
    return Delivery(json.dumps(sample.body, separators=(",", ":")).encode(), unique, headers)


def sign(provider: str, secret: str, delivery: Delivery, *, url: str, now: float) -> dict[str, str]:
    """The headers the provider sends ``delivery`` to ``url`` with, signed with ``secret``."""
    headers = {"content-type": "application/json"}
    if provider == "stripe":
        return headers | stripe.sign(secret, int(now), delivery.body)
    if provider == "ascora":
        return headers | standard_webhooks.sign(
            secret, delivery.delivery_id, int(now), delivery.body
        )
    if provider == "xero":
        return headers | xero.sign(secret, delivery.body)
    if provider == "quickbooks":
        return headers | quickbooks.sign(secret, delivery.body)
    if provider == "hubspot":
        return headers | hubspot.sign(secret, "POST", url, delivery.body, int(now * 1000))
    if provider == "shopify":
        return headers | dict(delivery.headers) | shopify.sign(secret, delivery.body)
    raise UnknownSampleError(f"no samples for provider {provider!r}")
