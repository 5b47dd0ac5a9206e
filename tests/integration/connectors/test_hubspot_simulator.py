"""The HubSpot client against the HubSpot simulator over real HTTP, webhooks included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from connectors.http import (
    AuthError,
    OAuth2Auth,
    OAuthTokens,
    ProviderError,
    StaticAuth,
    refresh_with,
)
from connectors.hubspot import CONNECTOR
from connectors.hubspot.client import DuplicateContactError, HubSpotClient, make_client
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.spec import WebhookItem
from tests.integration.connectors.served import (
    Hook,
    deleted,
    delivered,
    every_page,
    records_of,
    served,
    simulating,
)

SECRET = "hubspot-client-secret"
PORTAL_ID = 62515
SETTINGS = {"portal_id": PORTAL_ID}
WEBHOOK_PATH = "/webhooks/hubspot/conn-1"


@dataclass
class Receiver:
    url: str
    deliveries: list[Hook] = field(default_factory=list)

    def items(self, since: int = 0) -> list[WebhookItem]:
        """Every delivery from ``since`` on, verified as ingest would, then parsed."""
        items: list[WebhookItem] = []
        for _, _, parsed in delivered(
            CONNECTOR, self.deliveries[since:], SECRET, SETTINGS, now=time.time()
        ):
            assert parsed.ignored == 0
            items.extend(parsed.items)
        return items


@dataclass
class Harness:
    sim: HubSpotSimulator
    base_url: str
    session: aiohttp.ClientSession
    client: HubSpotClient
    receiver: Receiver

    async def control(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(f"{self.base_url}/_sim/{path}", json=body) as response:
            assert response.status < 300
            return await response.json()

    def client_with(self, settings: dict[str, Any]) -> HubSpotClient:
        return make_client(self.session, self.base_url, StaticAuth.bearer("sim-token"), settings)


@pytest.fixture
async def hubspot() -> AsyncIterator[Harness]:
    def make(url: str) -> HubSpotSimulator:
        return HubSpotSimulator(webhook_url=url, webhook_secret=SECRET, portal_id=PORTAL_ID)

    async with simulating(make, WEBHOOK_PATH) as (sim, base_url, hooks, session):
        client = make_client(session, base_url, StaticAuth.bearer("sim-token"), SETTINGS)
        yield Harness(sim, base_url, session, client, Receiver(hooks.url, hooks.hooks))


ADA = {
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "company": "Analytical Engines",
    "address": {
        "line1": "12 St James's Sq",
        "city": "London",
        "postal_code": "SW1Y",
        "country": "GB",
    },
}


async def test_contact_create_fetch_update_delete(hubspot: Harness) -> None:
    client = hubspot.client
    created = await client.create("customer", ADA, {}, idempotency_key="k1")
    assert created.external_id.isdigit()
    assert created.data == ADA

    fetched = await client.fetch("customer", created.external_id)
    assert fetched.data == ADA
    assert fetched.updated_at == created.updated_at

    await asyncio.sleep(0.01)
    updated = await client.update(
        "customer", created.external_id, {"name": "Augusta Ada King", "phone": None}, {}
    )
    assert updated.data["name"] == "Augusta Ada King"
    assert updated.data["phone"] is None
    assert updated.data["email"] == "ada@example.com"
    assert updated.updated_at > created.updated_at

    gone = await deleted(client, "customer", created.external_id)
    assert gone.status == 404
    assert '"category": "OBJECT_NOT_FOUND"' in gone.body_excerpt

    await hubspot.sim.drained()
    items = hubspot.receiver.items()
    assert {(i.entity_type, i.external_id) for i in items} == {("customer", created.external_id)}
    assert [i.op for i in items][-1] == "delete"
    assert all(i.op == "upsert" for i in items[:-1])
    assert len({i.event_id for i in items}) == len(items)


async def test_one_delivery_batches_every_property_change(hubspot: Harness) -> None:
    created = await hubspot.client.create("customer", ADA, {}, idempotency_key="k1")
    await hubspot.sim.drained()
    # creation + one propertyChange per property set, all in one request, as HubSpot does.
    assert len(hubspot.receiver.deliveries) == 1
    items = hubspot.receiver.items()
    assert len(items) >= 9

    before = len(hubspot.receiver.deliveries)
    await hubspot.client.update(
        "customer",
        created.external_id,
        {"name": "Ada King", "company": "Difference Engines", "email": "ada@king.example"},
        {},
    )
    await hubspot.sim.drained()
    assert len(hubspot.receiver.deliveries) == before + 1
    changed = hubspot.receiver.items(since=before)
    assert len(changed) == 3  # lastname, company, email (firstname is still "Ada")
    assert {(i.external_id, i.op) for i in changed} == {(created.external_id, "upsert")}
    occurred = {i.occurred_at for i in changed}
    assert len(occurred) == 1
    assert abs(occurred.pop() - datetime.now(UTC)).total_seconds() < 60


async def test_user_edit_in_hubspot_is_announced(hubspot: Harness) -> None:
    created = await hubspot.client.create("customer", ADA, {}, idempotency_key="k1")
    await hubspot.sim.drained()
    before = len(hubspot.receiver.deliveries)
    async with hubspot.session.patch(
        f"{hubspot.base_url}/_sim/records/customer/{created.external_id}",
        json={"properties": {"phone": "+44 20 0000 0000"}},
    ) as response:
        assert response.status == 200
    await hubspot.sim.drained()
    (item,) = hubspot.receiver.items(since=before)
    assert (item.external_id, item.op) == (created.external_id, "upsert")
    assert (await hubspot.client.fetch("customer", item.external_id)).data[
        "phone"
    ] == "+44 20 0000 0000"


async def test_deal_is_created_against_its_contact_and_can_move(hubspot: Harness) -> None:
    client = hubspot.client
    ada = await client.create("customer", ADA, {}, idempotency_key="k1")
    grace = await client.create(
        "customer", {"name": "Grace Hopper", "email": "grace@example.com"}, {}, idempotency_key="k2"
    )
    job = {
        "title": "Switchboard upgrade",
        "description": "Three-phase, with RCDs",
        "status": "scheduled",
        "scheduled_end": "2025-03-04T05:06:07.089000Z",
    }
    created = await client.create("job", job, {"customer_id": ada.external_id}, "k3")
    assert created.refs == {"customer_id": ada.external_id}
    fetched = await client.fetch("job", created.external_id)
    assert fetched.data == job
    assert fetched.refs == {"customer_id": ada.external_id}

    moved = await client.update(
        "job", created.external_id, {"status": "completed"}, {"customer_id": grace.external_id}
    )
    assert moved.data["status"] == "completed"
    assert moved.refs == {"customer_id": grace.external_id}
    again = await client.fetch("job", created.external_id)
    assert again.refs == {"customer_id": grace.external_id}
    assert hubspot.sim.store["job"][created.external_id]["properties"]["dealstage"] == "closedwon"

    await deleted(client, "job", created.external_id)
    await hubspot.sim.drained()
    deal_items = [i for i in hubspot.receiver.items() if i.entity_type == "job"]
    assert deal_items[-1].op == "delete"
    assert {i.external_id for i in deal_items} == {created.external_id}


async def test_job_without_status_is_created_as_a_draft(hubspot: Harness) -> None:
    created = await hubspot.client.create("job", {"title": "Site visit"}, {}, "k1")
    assert created.data["status"] == "draft"
    assert created.refs == {}


async def test_list_pages_through_every_record(hubspot: Harness) -> None:
    await hubspot.control("seed", {"count": 130})
    pages = await every_page(hubspot.client, "job")
    seen = records_of(pages)
    assert len(pages) == 2
    assert len(seen) == len({r.external_id for r in seen}) == 130
    assert all(r.refs.get("customer_id") for r in seen)
    assert all(r.data["title"] for r in seen)
    # Seeding sends no webhooks: the records existed before anyone subscribed.
    await hubspot.sim.drained()
    assert hubspot.receiver.deliveries == []


async def test_search_since_returns_only_newer_records_oldest_first(hubspot: Harness) -> None:
    await hubspot.control("seed", {"count": 5})
    await asyncio.sleep(0.02)
    since = datetime.now(UTC)
    await asyncio.sleep(0.02)
    contacts = sorted(hubspot.sim.store["customer"], key=int)
    deals = sorted(hubspot.sim.store["job"], key=int)
    await hubspot.client.update("customer", contacts[3], {"company": "Later Pty Ltd"}, {})
    await asyncio.sleep(0.01)
    await hubspot.client.update("customer", contacts[1], {"company": "Latest Pty Ltd"}, {})
    await hubspot.client.update("job", deals[2], {"title": "Rescheduled"}, {})

    page = await hubspot.client.list_page("customer", None, since)
    assert [r.external_id for r in page.records] == [contacts[3], contacts[1]]
    assert page.next_cursor is None
    assert all(r.updated_at >= since for r in page.records)
    (job,) = (await hubspot.client.list_page("job", None, since)).records
    assert job.external_id == deals[2]
    assert job.data["title"] == "Rescheduled"
    # Search answers carry no associations; the client reads them in one batch call.
    assert job.refs == {"customer_id": hubspot.sim.deal_contacts[deals[2]][0]}


async def test_search_since_pages_past_the_first_hundred(hubspot: Harness) -> None:
    since = datetime(2000, 1, 1, tzinfo=UTC)
    await hubspot.control("seed", {"count": 120})
    first = await hubspot.client.list_page("customer", None, since)
    assert len(first.records) == 100
    assert first.next_cursor is not None
    second = await hubspot.client.list_page("customer", first.next_cursor, since)
    assert len(second.records) == 20
    assert second.next_cursor is None
    times = [r.updated_at for r in (*first.records, *second.records)]
    assert times == sorted(times)


async def test_duplicate_email_is_a_409_naming_the_existing_contact(hubspot: Harness) -> None:
    first = await hubspot.client.create("customer", ADA, {}, idempotency_key="k1")
    with pytest.raises(DuplicateContactError) as caught:
        await hubspot.client.create(
            "customer", {**ADA, "email": "ADA@example.com"}, {}, idempotency_key="k2"
        )
    error = caught.value
    assert isinstance(error, ProviderError)
    assert error.status == 409
    assert error.transient is False
    assert error.existing_id == first.external_id
    assert '"category": "CONFLICT"' in error.body_excerpt
    other = await hubspot.client.create(
        "customer", {"name": "Other", "email": "other@example.com"}, {}, idempotency_key="k3"
    )
    with pytest.raises(DuplicateContactError):
        await hubspot.client.update("customer", other.external_id, {"email": ADA["email"]}, {})


async def test_injected_429_surfaces_retry_after(hubspot: Harness) -> None:
    await hubspot.control("faults", {"status": 429, "count": 1, "retry_after": 7})
    with pytest.raises(ProviderError) as caught:
        await hubspot.client.list_page("customer", None, None)
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.transient is True
    assert (await hubspot.client.list_page("customer", None, None)).records == ()


async def test_injected_500_is_transient(hubspot: Harness) -> None:
    await hubspot.control("faults", {"status": 500, "count": 1})
    with pytest.raises(ProviderError) as caught:
        await hubspot.client.fetch("customer", "51")
    assert caught.value.status == 500
    assert caught.value.transient is True


async def test_invalid_deal_stage_is_a_400_and_not_transient(hubspot: Harness) -> None:
    client = hubspot.client_with({"status_deal_stage": {"completed": "no_such_stage"}})
    with pytest.raises(ProviderError) as caught:
        await client.create("job", {"title": "Roof", "status": "completed"}, {}, "k1")
    assert caught.value.status == 400
    assert caught.value.transient is False
    assert "INVALID_OPTION" in caught.value.body_excerpt


async def test_simulator_rate_limit_answers_429_with_retry_after() -> None:
    assert CONNECTOR.api is not None
    limit = CONNECTOR.api.rate_limit
    sim = HubSpotSimulator(rate_limit=limit)
    answered = 0
    refused: ProviderError | None = None
    async with served(sim.app()) as base_url, aiohttp.ClientSession() as session:
        client = make_client(session, base_url, StaticAuth.bearer("sim-token"), {})
        # The bucket refills while requests run, so a few more than the burst pass.
        for _ in range(limit.burst * 2):
            try:
                await client.list_page("customer", None, None)
            except ProviderError as exc:
                refused = exc
                break
            answered += 1
    assert answered >= limit.burst
    assert refused is not None
    assert refused.status == 429
    assert refused.retry_after is not None
    assert refused.retry_after >= 1


async def test_wrong_token_is_an_auth_error(hubspot: Harness) -> None:
    client = make_client(hubspot.session, hubspot.base_url, StaticAuth.bearer("nope"), {})
    with pytest.raises(AuthError):
        await client.list_page("customer", None, None)


async def test_oauth_tokens_refresh_at_hubspots_token_path(hubspot: Harness) -> None:
    issued = await hubspot.control("oauth", {"issue": True})
    assert CONNECTOR.api is not None
    assert CONNECTOR.api.token_url == "/oauth/v1/token"
    tokens = OAuthTokens(
        access_token="expired",
        refresh_token=issued["refresh_token"],
        expires_at=0,
        client_id="client",
        client_secret="secret",
        token_url=CONNECTOR.api.token_url,
    )

    async def save(_: OAuthTokens) -> None:
        return None

    auth = OAuth2Auth(tokens, refresh_with(hubspot.session, hubspot.base_url), save)
    client = make_client(hubspot.session, hubspot.base_url, auth, {})
    assert (await client.list_page("customer", None, None)).records == ()
    assert auth.refreshes == 1
