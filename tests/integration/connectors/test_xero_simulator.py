"""The Xero client against the Xero simulator over real HTTP, webhooks included."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.http import (
    AuthError,
    NotFoundError,
    OAuth2Auth,
    OAuthTokens,
    ProviderError,
    StaticAuth,
    UnsupportedOperationError,
    refresh_with,
    send,
)
from connectors.simulators import simulator_for
from connectors.xero import CONNECTOR
from connectors.xero.client import XeroClient, make_client
from connectors.xero.simulator import XeroSimulator
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import (
    Inbox,
    TickingClock,
    client_of,
    delivered,
    every_page,
    records_of,
    simulating,
)

WEBHOOK_KEY = "xero-webhook-key-for-the-simulator"
TENANT = "3a1bd5f0-0c1e-4a8e-9f55-1b3e3c0b7d21"
SETTINGS: dict[str, Any] = {
    "xero_tenant_id": TENANT,
    "xero_payment_account_code": "090",
    "xero_base_currency": "NZD",
}
START = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


@dataclass
class Stack:
    sim: XeroSimulator
    url: str
    hook_url: str
    session: aiohttp.ClientSession
    received: Inbox

    def client(self, settings: dict[str, Any] | None = None, auth: Any = None) -> XeroClient:
        return client_of(
            XeroClient, make_client, self.session, self.url, settings or SETTINGS, auth=auth
        )

    async def control(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(f"{self.url}/_sim/{path}", json=body) as response:
            assert response.status == 200


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    def make(url: str) -> XeroSimulator:
        return XeroSimulator(
            webhook_url=url, webhook_secret=WEBHOOK_KEY, tenant_id=TENANT, clock=TickingClock(START)
        )

    async with simulating(make, "/webhooks/xero") as (sim, sim_url, received, session):
        yield Stack(sim, sim_url, received.url, session, received)


def customer(name: str = "Andrea Dutchess", **extra: Any) -> dict[str, Any]:
    return {"name": name, "company": "ABC Limited", "email": "andrea@abc.example", **extra}


INVOICE = {
    "number": "INV-0100",
    "status": "open",
    "currency": "NZD",
    "issued_on": "2024-02-29",
    "due_on": "2024-03-31",
    "lines": [
        {"description": "Labour", "quantity": "2.5", "unit_amount": 8500, "tax_amount": 3188},
        {"description": "Filter", "quantity": "3", "unit_amount": 2495, "tax_amount": 1123},
    ],
}


# --- the lifecycle and its webhooks --------------------------------------------------------


async def test_create_fetch_update_delete_and_the_webhooks_they_send(stack: Stack) -> None:
    client = stack.client()
    created = await client.create("customer", customer(), {}, idempotency_key="k-c1")
    contact_id = created.external_id
    assert created.data["company"] == "ABC Limited"
    assert created.updated_at.tzinfo is not None

    fetched = await client.fetch("customer", contact_id)
    assert fetched.data == created.data
    updated = await client.update(
        "customer", contact_id, customer(email="andrea@new.example", phone="04 555 0101"), {}
    )
    assert (updated.data["email"], updated.data["phone"]) == ("andrea@new.example", "04 555 0101")
    assert updated.updated_at > created.updated_at

    invoice = await client.create("invoice", INVOICE, {"customer_id": contact_id}, "k-i1")
    invoice_id = invoice.external_id
    assert invoice.refs == {"customer_id": contact_id}
    assert (invoice.data["subtotal"], invoice.data["tax"], invoice.data["total"]) == (
        28735,
        4311,
        33046,
    )
    changed = await client.update(
        "invoice", invoice_id, {**INVOICE, "due_on": "2024-04-15"}, {"customer_id": contact_id}
    )
    assert changed.data["due_on"] == "2024-04-15"

    payment = await client.create(
        "payment",
        {"amount": 10000, "currency": "NZD", "paid_at": "2024-03-05T00:00:00Z", "reference": "DD"},
        {"invoice_id": invoice_id},
        "k-p1",
    )
    assert payment.refs == {"invoice_id": invoice_id, "customer_id": contact_id}
    assert (await client.fetch("invoice", invoice_id)).data["amount_due"] == 23046

    await client.delete("payment", payment.external_id)
    assert (await client.fetch("payment", payment.external_id)).deleted is True
    assert (await client.fetch("invoice", invoice_id)).data["amount_due"] == 33046
    await client.delete("invoice", invoice_id)
    voided = await client.fetch("invoice", invoice_id)
    assert (voided.data["status"], voided.deleted) == ("void", False)
    await client.delete("invoice", invoice_id)  # already voided: nothing left to do
    await client.delete("customer", contact_id)
    assert (await client.fetch("customer", contact_id)).deleted is True
    with pytest.raises(NotFoundError):
        await client.fetch("customer", "00000000-0000-0000-0000-000000000000")

    await stack.sim.drained()
    seen = []
    for _, verified, parsed in delivered(
        CONNECTOR, stack.received.hooks, WEBHOOK_KEY, SETTINGS, now=time.time(), url=stack.hook_url
    ):
        assert verified.handshake is False
        seen += [(i.entity_type, i.external_id, i.event_id.split(":")[2]) for i in parsed.items]
    assert seen == [
        ("customer", contact_id, "CREATE"),
        ("customer", contact_id, "UPDATE"),
        ("invoice", invoice_id, "CREATE"),
        ("invoice", invoice_id, "UPDATE"),
        ("invoice", invoice_id, "UPDATE"),  # the payment: Xero has no payment events
        ("invoice", invoice_id, "UPDATE"),  # the payment's deletion
        ("invoice", invoice_id, "UPDATE"),  # voided
        ("customer", contact_id, "UPDATE"),  # archived
    ]


async def test_a_webhook_signed_with_another_key_does_not_verify(stack: Stack) -> None:
    await stack.client().create("customer", customer(), {}, "k")
    await stack.sim.drained()
    (hook,) = stack.received.hooks
    headers, body = hook.headers, hook.body
    request = WebhookRequest("POST", stack.hook_url, headers, body)
    with pytest.raises(SignatureError, match="bad_signature"):
        CONNECTOR.scheme.verify(request, ["another-key"], time.time())


async def test_a_repeated_idempotency_key_creates_once(stack: Stack) -> None:
    client = stack.client()
    first = await client.create("customer", customer(), {}, "same-key")
    again = await client.create("customer", customer(), {}, "same-key")
    assert again.external_id == first.external_id
    assert len(stack.sim.live("customer")) == 1


async def test_draft_invoices_are_deleted_not_voided(stack: Stack) -> None:
    client = stack.client()
    contact = await client.create("customer", customer(), {}, "k-c")
    draft = {**INVOICE, "status": "draft"}
    invoice = await client.create("invoice", draft, {"customer_id": contact.external_id}, "k-i")
    await client.delete("invoice", invoice.external_id)
    gone = await client.fetch("invoice", invoice.external_id)
    assert (gone.deleted, stack.sim.store["invoice"][invoice.external_id]["Status"]) == (
        True,
        "DELETED",
    )


async def test_payments_cannot_be_edited_and_paid_invoices_cannot_be_voided(stack: Stack) -> None:
    client = stack.client()
    contact = await client.create("customer", customer(), {}, "k-c")
    invoice = await client.create("invoice", INVOICE, {"customer_id": contact.external_id}, "k")
    paid = {"amount": 33046, "currency": "NZD", "paid_at": "2024-03-05T00:00:00Z"}
    payment = await client.create("payment", paid, {"invoice_id": invoice.external_id}, "k-p")
    assert (await client.fetch("invoice", invoice.external_id)).data["status"] == "paid"
    with pytest.raises(UnsupportedOperationError):
        await client.update("payment", payment.external_id, paid, {})
    with pytest.raises(ProviderRuleError, match="remove its payments first"):
        await client.delete("invoice", invoice.external_id)


# --- lists -----------------------------------------------------------------------------------


async def test_list_pages_through_every_record_oldest_change_first(stack: Stack) -> None:
    stack.sim.seed(120)
    client = stack.client()
    for entity_type in ("customer", "invoice", "payment"):
        first = await client.list_page(entity_type, None, None)
        assert (len(first.records), first.next_cursor) == (100, "2")
        second = await client.list_page(entity_type, first.next_cursor, None)
        assert (len(second.records), second.next_cursor) == (20, None)
        records = first.records + second.records
        assert len({r.external_id for r in records}) == 120
        stamps = [r.updated_at for r in records]
        assert stamps == sorted(stamps)


async def test_modified_since_returns_only_later_changes(stack: Stack) -> None:
    stack.sim.seed(30)
    client = stack.client()
    everything = (await client.list_page("customer", None, None)).records
    since = everything[20].updated_at
    recent = await client.list_page("customer", None, since + timedelta(milliseconds=900))
    assert [r.external_id for r in recent.records] == [r.external_id for r in everything[20:]]
    assert recent.next_cursor is None


async def test_a_smaller_page_size_setting_pages_sooner(stack: Stack) -> None:
    stack.sim.seed(12)
    client = stack.client({**SETTINGS, "xero_page_size": 5})
    seen = [r.external_id for r in records_of(await every_page(client, "invoice"))]
    assert len(seen) == len(set(seen)) == 12


async def test_archived_contacts_are_listed(stack: Stack) -> None:
    client = stack.client()
    contact = await client.create("customer", customer(), {}, "k")
    await client.delete("customer", contact.external_id)
    (listed,) = (await client.list_page("customer", None, None)).records
    assert listed.deleted is True


# --- errors ------------------------------------------------------------------------------------


async def test_a_429_carries_retry_after(stack: Stack) -> None:
    await stack.control("faults", {"status": 429, "count": 1, "retry_after": 7})
    with pytest.raises(ProviderError) as caught:
        await stack.client().list_page("customer", None, None)
    assert (caught.value.status, caught.value.retry_after, caught.value.transient) == (
        429,
        7.0,
        True,
    )


async def test_a_500_is_transient(stack: Stack) -> None:
    await stack.control("faults", {"status": 500, "count": 1})
    with pytest.raises(ProviderError) as caught:
        await stack.client().fetch("customer", "anything")
    assert (caught.value.status, caught.value.transient) == (500, True)


async def test_a_validation_exception_is_a_400_that_retrying_cannot_fix(stack: Stack) -> None:
    client = stack.client()
    await client.create("customer", customer(), {}, "k-1")
    with pytest.raises(ProviderError) as caught:
        await client.create("customer", customer(), {}, "k-2")  # Xero: names are unique
    assert (caught.value.status, caught.value.transient) == (400, False)
    assert "ValidationException" in caught.value.body_excerpt
    assert "already assigned to another contact" in caught.value.body_excerpt


# --- Xero specifics ----------------------------------------------------------------------------


async def test_calls_for_another_tenant_are_forbidden(stack: Stack) -> None:
    stranger = stack.client({**SETTINGS, "xero_tenant_id": "another-organisation"})
    with pytest.raises(AuthError) as caught:
        await stranger.list_page("customer", None, None)
    assert caught.value.status == 403


async def test_the_tenant_header_is_required(stack: Stack) -> None:
    with pytest.raises(AuthError) as caught:
        await send(
            stack.session,
            "GET",
            f"{stack.url}/api.xro/2.0/Contacts",
            auth=StaticAuth.bearer("sim-token"),
        )
    assert caught.value.status == 403
    assert "AuthenticationUnsuccessful" in caught.value.body_excerpt


async def oauth(stack: Stack, expires_at: float) -> tuple[OAuth2Auth, list[OAuthTokens]]:
    issued = stack.sim.issue_tokens()
    saved: list[OAuthTokens] = []

    async def save(tokens: OAuthTokens) -> None:
        saved.append(tokens)

    tokens = OAuthTokens(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=expires_at,
        client_id="client-id",
        client_secret="client-secret",
        token_url="/oauth/token",
    )
    return OAuth2Auth(tokens, refresh_with(stack.session, stack.url), save), saved


async def test_an_expired_access_token_is_refreshed_before_the_call(stack: Stack) -> None:
    auth, saved = await oauth(stack, expires_at=time.time() - 1)
    page = await stack.client(auth=auth).list_page("customer", None, None)
    assert page.records == ()
    assert (auth.refreshes, stack.sim.refresh_calls, len(saved)) == (1, 1, 1)
    assert saved[0].expires_at > time.time() + 1500  # Xero's 30-minute access tokens


async def test_a_token_the_server_expired_is_refreshed_after_a_401(stack: Stack) -> None:
    stack.sim.access_ttl = -1  # already expired when issued, though we think it fresh
    auth, _ = await oauth(stack, expires_at=time.time() + 3600)
    stack.sim.access_ttl = 1800
    await stack.client(auth=auth).list_page("customer", None, None)
    assert (auth.refreshes, stack.sim.refresh_calls) == (1, 1)


async def test_dates_round_trip_through_xero(stack: Stack) -> None:
    client = stack.client()
    contact = await client.create("customer", customer(), {}, "k-c")
    invoice = await client.create("invoice", INVOICE, {"customer_id": contact.external_id}, "k")
    stored = stack.sim.store["invoice"][invoice.external_id]
    assert stored["DateString"] == "2024-02-29T00:00:00"
    assert stored["Date"] == "/Date(1709164800000+0000)/"
    assert stored["DueDateString"] == "2024-03-31T00:00:00"
    fetched = await client.fetch("invoice", invoice.external_id)
    assert (fetched.data["issued_on"], fetched.data["due_on"]) == ("2024-02-29", "2024-03-31")
    assert fetched.updated_at == invoice.updated_at
    assert fetched.updated_at.utcoffset() == timedelta(0)
    assert START < fetched.updated_at < START + timedelta(minutes=5)
    payment = await client.create(
        "payment",
        {"amount": 1000, "currency": "NZD", "paid_at": "2024-03-05T00:00:00Z"},
        {"invoice_id": invoice.external_id},
        "k-p",
    )
    assert payment.data["paid_at"] == "2024-03-05T00:00:00Z"
    assert date.fromisoformat(fetched.data["issued_on"]).isoweekday() == 4


def test_the_connector_builds_this_client() -> None:
    assert CONNECTOR.api is not None
    builder: Callable[..., Any] = CONNECTOR.api.make_client
    assert builder is make_client
    assert simulator_for("xero") is XeroSimulator
