"""The client built from acme.json against the AcmeCRM simulator, over real HTTP."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.generic import (
    auth_for,
    connector_for,
    load_mapping_file,
    mapping_settings,
)
from connectors.generic.client import GenericClient, make_client
from connectors.generic.simulator import AcmeSimulator
from connectors.http import AuthError, ProviderError, StaticAuth, UnsupportedOperationError
from connectors.simkit import Fault
from connectors.spec import RateLimit, WebhookItem
from tests.integration.connectors.served import (
    GENEROUS,
    Hook,
    deleted,
    delivered,
    every_page,
    inbox,
    records_of,
    served,
)

ACME = Path(__file__).resolve().parents[3] / "connectors" / "generic" / "examples" / "acme.json"
SIGNATURE, MAPPING = load_mapping_file(ACME)
SETTINGS: dict[str, Any] = {
    "generic": SIGNATURE.model_dump(mode="json"),
    "generic_mapping": mapping_settings(MAPPING),
}
SECRET = "acme webhook secret"


@dataclass
class Acme:
    sim: AcmeSimulator
    base_url: str
    session: aiohttp.ClientSession
    received: list[Hook] = field(default_factory=list)

    def client(self, settings: dict[str, Any] | None = None) -> GenericClient:
        return make_client(
            self.session, self.base_url, auth_for(MAPPING, token="sim-token"), settings or SETTINGS
        )

    async def webhook_items(self) -> list[WebhookItem]:
        """Every webhook received so far, verified and parsed in order."""
        await self.sim.drained()
        connector = connector_for(SIGNATURE, MAPPING)
        items: list[WebhookItem] = []
        for hook, verified, parsed in delivered(
            connector,
            self.received,
            SECRET,
            SETTINGS,
            now=time.time(),
            url="http://127.0.0.1/hooks",
        ):
            assert verified.provider_event_id == hook.headers["x-acme-delivery"]
            items.extend(parsed.items)
        return items


async def _start(rate_limit: RateLimit) -> AsyncIterator[Acme]:
    async with inbox(status=204) as hooks:
        sim = AcmeSimulator(webhook_url=hooks.url, webhook_secret=SECRET, rate_limit=rate_limit)
        async with served(sim.app()) as base_url, aiohttp.ClientSession() as session:
            yield Acme(sim, base_url, session, hooks.hooks)


@pytest.fixture
async def acme() -> AsyncIterator[Acme]:
    async for running in _start(GENEROUS):
        yield running


def _with_page_size(entity_type: str, size: int) -> dict[str, Any]:
    settings = copy.deepcopy(SETTINGS)
    settings["generic_mapping"]["entities"][entity_type]["pagination"]["page_size"] = size
    return settings


CUSTOMER = {
    "name": "Amelia Kelly",
    "email": "amelia@kelly.example",
    "phone": "+61 7 3555 0101",
    "address": {"line1": "5 Ann St", "city": "Brisbane City", "region": "QLD", "country": "AU"},
}


async def test_customer_create_fetch_update_delete_with_full_webhooks(acme: Acme) -> None:
    client = acme.client()
    created = await client.create("customer", CUSTOMER, {}, idempotency_key="k1")
    assert created.external_id.startswith("con_")
    assert created.version == "1"
    assert {k: created.data[k] for k in CUSTOMER} == CUSTOMER

    fetched = await client.fetch("customer", created.external_id)
    assert fetched == created

    updated = await client.update(
        "customer", created.external_id, {"company": "Kelly Plumbing", "phone": None}, {}
    )
    assert (updated.data["company"], updated.data["phone"]) == ("Kelly Plumbing", None)
    assert updated.data["name"] == "Amelia Kelly"
    assert updated.version == "2"
    assert updated.updated_at > created.updated_at

    gone = await deleted(client, "customer", created.external_id, ProviderError)
    assert gone.status == 404
    assert '"not_found"' in gone.body_excerpt

    items = await acme.webhook_items()
    assert [(i.external_id, i.op) for i in items] == [(created.external_id, "upsert")] * 2 + [
        (created.external_id, "delete")
    ]
    first, second, _ = items
    assert first.record is not None
    assert first.record.data == created.data
    assert second.record is not None
    assert second.record.data == updated.data
    assert len({i.event_id for i in items}) == 3


async def test_job_with_reference_and_thin_webhooks(acme: Acme) -> None:
    client = acme.client()
    contact = await client.create("customer", {"name": "Noah Singh"}, {}, idempotency_key="c")
    job_data = {
        "title": "Install ceiling fan",
        "status": "scheduled",
        "priority": "urgent",
        "scheduled_start": "2024-03-15T23:30:00Z",
        "scheduled_end": "2024-03-16T01:00:00Z",
        "site_address": {"line1": "9 Logan Rd", "postal_code": "4102"},
    }
    refs = {"customer_id": contact.external_id}
    job = await client.create("job", job_data, refs, idempotency_key="j")
    assert job.external_id.startswith("wo_")
    assert job.refs == refs
    assert {k: job.data[k] for k in job_data} == job_data
    stored = acme.sim.get("job", job.external_id)
    assert stored["window"]["from"] == "16/03/2024 09:30 +1000"

    moved = await client.update("job", job.external_id, {"status": "in_progress"}, refs)
    assert moved.data["status"] == "in_progress"
    assert moved.data["scheduled_start"] == job_data["scheduled_start"]
    assert await client.fetch("job", job.external_id) == moved

    items = [i for i in await acme.webhook_items() if i.entity_type == "job"]
    assert [(i.op, i.record) for i in items] == [("upsert", None), ("upsert", None)]
    hydrated = await client.fetch("job", items[-1].external_id)
    assert hydrated == moved

    gone = await deleted(client, "job", job.external_id, ProviderError)
    assert gone.status == 404
    items = [i for i in await acme.webhook_items() if i.entity_type == "job"]
    assert items[-1].op == "delete"


async def test_invoice_money_survives_the_api_and_cannot_be_deleted(acme: Acme) -> None:
    client = acme.client()
    contact = await client.create("customer", {"name": "Isla Brown"}, {}, idempotency_key="c")
    data = {
        "number": "INV-2001",
        "status": "open",
        "currency": "JPY",
        "issued_on": "2024-03-15",
        "due_on": "2024-03-29",
        "lines": [
            {"description": "Labour", "quantity": "2.5", "unit_amount": 9500, "tax_amount": 2375}
        ],
        "subtotal": 23750,
        "tax": 2375,
        "total": 26125,
        "amount_due": 26125,
    }
    invoice = await client.create(
        "invoice", data, {"customer_id": contact.external_id}, idempotency_key="i"
    )
    assert {k: invoice.data[k] for k in data} == data
    assert acme.sim.get("invoice", invoice.external_id)["gross"] == "26125"
    paid = await client.update("invoice", invoice.external_id, {"status": "paid"}, {})
    assert (paid.data["status"], paid.data["total"]) == ("paid", 26125)
    with pytest.raises(UnsupportedOperationError):
        await client.delete("invoice", invoice.external_id)
    with pytest.raises(UnsupportedOperationError):
        await client.fetch("payment", "pay_1")


async def test_contacts_list_by_page_number_and_modified_since(acme: Acme) -> None:
    acme.sim.seed(7)
    client = acme.client(_with_page_size("customer", 3))
    pages = await every_page(client, "customer")
    seen = records_of(pages)
    assert len(pages) == 3
    assert len({r.external_id for r in seen}) == 7
    assert [r.updated_at for r in seen] == sorted(r.updated_at for r in seen)

    since = max(r.updated_at for r in seen) + timedelta(milliseconds=1)
    changed = [seen[1].external_id, seen[4].external_id]
    for external_id in changed:
        await client.update("customer", external_id, {"notes": "Called back"}, {})
    page = await client.list_page("customer", None, since)
    assert [r.external_id for r in page.records] == changed
    assert page.next_cursor is None
    assert all(r.data["notes"] == "Called back" for r in page.records)


async def test_work_orders_list_by_cursor_and_modified_since(acme: Acme) -> None:
    acme.sim.seed(5)
    client = acme.client(_with_page_size("job", 2))
    pages = await every_page(client, "job")
    seen = records_of(pages)
    assert len(pages) == 3
    assert len({r.external_id for r in seen}) == 5
    assert all(r.refs.get("customer_id", "").startswith("con_") for r in seen)

    since = max(r.updated_at for r in seen) + timedelta(milliseconds=1)
    await client.update("job", seen[0].external_id, {"priority": "low"}, {})
    page = await client.list_page("job", None, since)
    assert [(r.external_id, r.data["priority"]) for r in page.records] == [
        (seen[0].external_id, "low")
    ]


async def test_user_edits_in_acme_arrive_as_webhooks(acme: Acme) -> None:
    acme.sim.seed(1)
    [contact_id] = list(acme.sim.store["customer"])
    acme.sim.update("customer", contact_id, {"archived": True})
    [item] = [i for i in await acme.webhook_items() if i.entity_type == "customer"]
    assert item.record is not None
    assert item.record.deleted is True


async def test_injected_429_carries_retry_after(acme: Acme) -> None:
    acme.sim.faults.append(_fault(429, retry_after=7))
    with pytest.raises(ProviderError) as caught:
        await acme.client().fetch("customer", "con_000001")
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert caught.value.transient


async def test_injected_500_is_transient(acme: Acme) -> None:
    acme.sim.faults.append(_fault(500))
    with pytest.raises(ProviderError) as caught:
        await acme.client().list_page("job", None, None)
    assert caught.value.status == 500
    assert caught.value.transient


async def test_acme_validation_error_is_a_400_that_is_not_transient(acme: Acme) -> None:
    with pytest.raises(ProviderError) as caught:
        await acme.client().create(
            "job", {"title": "Orphan"}, {"customer_id": "con_999999"}, idempotency_key="x"
        )
    assert caught.value.status == 400
    assert not caught.value.transient
    assert "validation_failed" in caught.value.body_excerpt
    assert caught.value.request == "POST /api/work-orders"


async def test_wrong_api_key_is_an_auth_error(acme: Acme) -> None:
    client = make_client(acme.session, acme.base_url, StaticAuth.bearer("nope"), SETTINGS)
    with pytest.raises(AuthError):
        await client.fetch("customer", "con_000001")


async def test_acme_enforces_its_published_rate_limit() -> None:
    async for running in _start(RateLimit(rate=1, per_seconds=60, burst=2)):
        client = running.client()
        for _ in range(2):
            with pytest.raises(ProviderError) as caught:
                await client.fetch("customer", "con_000001")
            assert caught.value.status == 404
        with pytest.raises(ProviderError) as caught:
            await client.fetch("customer", "con_000001")
        assert caught.value.status == 429
        assert caught.value.retry_after is not None
        assert caught.value.retry_after > 0


def _fault(status: int, retry_after: float | None = None) -> Fault:
    return Fault(status=status, count=1, retry_after=retry_after)
