"""The Stripe client against the Stripe simulator over real HTTP, webhooks included.

The simulator runs on an aiohttp server and posts its signed webhooks to a small receiver
app; the client is the production one. Every webhook received must verify with the
connector's scheme and parse into the item the change announced.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.http import NotFoundError, ProviderError, StaticAuth, UnsupportedOperationError
from connectors.spec import EntityType, MappingError, WebhookItem
from connectors.stripe import CONNECTOR
from connectors.stripe.client import STRIPE_VERSION, StripeClient, make_client
from connectors.stripe.simulator import StripeSimulator
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import Hook, deleted, delivered, served, simulating

SECRET = "whsec_simulatorTestSecret0123456789abcd"
API_KEY = "sk_test_simulator_key"


@dataclass
class Stripe:
    sim: StripeSimulator
    client: StripeClient
    base_url: str
    session: aiohttp.ClientSession
    received: list[Hook] = field(default_factory=list)

    async def webhook_items(self) -> list[WebhookItem]:
        """Every webhook received so far, verified and parsed, in delivery order."""
        await self.sim.drained()
        items: list[WebhookItem] = []
        for _, verified, parsed in delivered(
            CONNECTOR, self.received, SECRET, {}, now=time.time(), url="http://receiver/hooks"
        ):
            assert parsed.ignored == 0
            for item in parsed.items:
                assert item.event_id == verified.provider_event_id
            items.extend(parsed.items)
        return items

    async def jennys(self, key: str) -> dict[str, str]:
        """JENNY created as a Stripe customer (idempotency ``key``): the refs of an invoice
        of hers."""
        customer = await self.client.create("customer", JENNY, {}, key)
        return {"customer_id": customer.external_id}

    async def event_types(self) -> list[str]:
        await self.sim.drained()
        return [json.loads(hook.body)["type"] for hook in self.received]

    async def control(self, path: str, body: dict[str, Any]) -> Any:
        async with self.session.post(f"{self.base_url}/_sim{path}", json=body) as response:
            assert response.status < 300
            return await response.json()


@pytest.fixture
async def stripe() -> AsyncIterator[Stripe]:
    def make(url: str) -> StripeSimulator:
        return StripeSimulator(webhook_url=url, webhook_secret=SECRET, api_token=API_KEY)

    async with simulating(make) as (sim, base_url, hooks, session):
        client = make_client(session, base_url, StaticAuth.bearer(API_KEY), {})
        yield Stripe(sim, client, base_url, session, hooks.hooks)


JENNY = {
    "name": "Jenny Rosen",
    "email": "jenny.rosen@example.com",
    "phone": "+1 415 555 0100",
    "company": "Rosen Plumbing",
    "address": {"line1": "1 Market St", "city": "San Francisco", "region": "CA", "country": "US"},
}


async def test_customer_create_fetch_update_list_delete(stripe: Stripe) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    created = await stripe.client.create("customer", JENNY, {}, "push-cust-1")
    assert created.external_id.startswith("cus_")
    assert created.data["company"] == "Rosen Plumbing"

    fetched = await stripe.client.fetch("customer", created.external_id)
    assert fetched.data == created.data
    assert fetched.updated_at >= created.updated_at - timedelta(seconds=1)

    updated = await stripe.client.update(
        "customer", created.external_id, {"name": "Jenny Rosen-Webb", "phone": None}, {}
    )
    assert updated.data["name"] == "Jenny Rosen-Webb"
    assert updated.data["phone"] is None
    assert updated.data["email"] == "jenny.rosen@example.com"

    # Full listing: more than one page of customers (Stripe's limit is at most 100).
    for index in range(104):
        stripe.sim.create("customer", stripe.sim.seed_object("customer", index), notify=False)
    first = await stripe.client.list_page("customer", None, None)
    assert len(first.records) == 100
    assert first.next_cursor is not None
    second = await stripe.client.list_page("customer", first.next_cursor, None)
    assert second.next_cursor is None
    listed = [r.external_id for r in first.records + second.records]
    assert len(listed) == len(set(listed)) == 105
    assert created.external_id in listed

    # Modified since: Stripe's Events, so only what changed, newest state, deletes included.
    changed = await stripe.client.list_page("customer", None, since)
    assert [r.external_id for r in changed.records] == [created.external_id]
    assert changed.records[0].data["name"] == "Jenny Rosen-Webb"

    await deleted(stripe.client, "customer", created.external_id)
    async with stripe.session.get(
        f"{stripe.base_url}/v1/customers/{created.external_id}",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert await response.json() == {
            "id": created.external_id,
            "object": "customer",
            "deleted": True,
        }
    with pytest.raises(NotFoundError):
        await stripe.client.delete("customer", created.external_id)
    gone = await stripe.client.list_page("customer", None, since)
    assert [(r.external_id, r.deleted) for r in gone.records] == [(created.external_id, True)]

    items = await stripe.webhook_items()
    assert [(i.entity_type, i.external_id, i.op) for i in items] == [
        ("customer", created.external_id, "upsert"),
        ("customer", created.external_id, "upsert"),
        ("customer", created.external_id, "delete"),
    ]
    assert items[0].record is not None
    assert items[0].record.data == created.data
    assert items[1].record is not None
    assert items[1].record.data == updated.data
    assert await stripe.event_types() == [
        "customer.created",
        "customer.updated",
        "customer.deleted",
    ]


async def test_same_idempotency_key_twice_creates_one_customer(stripe: Stripe) -> None:
    first = await stripe.client.create("customer", JENNY, {}, "push-cust-42")
    again = await stripe.client.create("customer", JENNY, {}, "push-cust-42")
    assert again.external_id == first.external_id
    assert len(stripe.sim.live("customer")) == 1
    assert await stripe.event_types() == ["customer.created"]
    event = json.loads(stripe.received[0].body)
    assert event["request"]["idempotency_key"] == "push-cust-42"

    with pytest.raises(ProviderError) as caught:
        await stripe.client.create("customer", {"name": "Someone else"}, {}, "push-cust-42")
    assert caught.value.status == 400
    assert not caught.value.transient
    assert json.loads(caught.value.body_excerpt)["error"]["type"] == "idempotency_error"
    assert len(stripe.sim.live("customer")) == 1


async def test_invoice_is_built_from_items_and_moves_through_stripe_statuses(
    stripe: Stripe,
) -> None:
    refs = await stripe.jennys("push-cust-7")
    data = {
        "number": "INV-0042",
        "currency": "USD",
        "status": "draft",
        "issued_on": "2025-06-02",
        "due_on": "2025-07-02",
        "lines": [
            {"description": "Labour (hours)", "quantity": "2.5", "unit_amount": 9_500},
            {"description": "Copper pipe 15mm (m)", "quantity": "12", "unit_amount": 450},
        ],
    }
    invoice = await stripe.client.create("invoice", data, refs, "push-inv-1")
    assert invoice.refs == refs
    assert {
        k: invoice.data[k] for k in ("number", "currency", "status", "issued_on", "due_on")
    } == {
        "number": "INV-0042",
        "currency": "USD",
        "status": "draft",
        "issued_on": "2025-06-02",
        "due_on": "2025-07-02",
    }
    assert [(ln["quantity"], ln["unit_amount"]) for ln in invoice.data["lines"]] == [
        ("2.5", 9_500),
        ("12", 450),
    ]
    assert (invoice.data["subtotal"], invoice.data["total"]) == (29_150, 29_150)

    # A push sends the whole record: a draft takes it, though its currency is fixed at
    # creation (Stripe's update has no currency parameter); another currency is refused.
    moved = await stripe.client.update(
        "invoice", invoice.external_id, {**data, "due_on": "2025-07-09"}, refs
    )
    assert moved.data["due_on"] == "2025-07-09"
    with pytest.raises(ProviderRuleError, match="currency is fixed at creation"):
        await stripe.client.update("invoice", invoice.external_id, {"currency": "EUR"}, refs)

    # Lines change on a draft by replacing its invoice items.
    new_lines = [{"description": "Site inspection", "quantity": "1", "unit_amount": 12_000}]
    draft = await stripe.client.update("invoice", invoice.external_id, {"lines": new_lines}, refs)
    assert [ln["description"] for ln in draft.data["lines"]] == ["Site inspection"]
    assert draft.data["total"] == 12_000

    opened = await stripe.client.update("invoice", invoice.external_id, {"status": "open"}, refs)
    assert opened.data["status"] == "open"
    writes = len(stripe.sim.log.requests)
    # Stripe's rules, known before asking: nothing is sent, and the refusal says the rule.
    with pytest.raises(ProviderRuleError, match="due_on can change only while it is a draft"):
        await stripe.client.update("invoice", invoice.external_id, {"due_on": "2026-01-01"}, refs)
    with pytest.raises(ProviderRuleError, match="is open: Stripe cannot move it to draft"):
        await stripe.client.update("invoice", invoice.external_id, {"status": "draft"}, refs)
    assert {r["method"] for r in list(stripe.sim.log.requests)[writes:]} == {"GET"}
    paid = await stripe.client.update("invoice", invoice.external_id, {"status": "paid"}, refs)
    assert (paid.data["status"], paid.data["amount_due"]) == ("paid", 0)
    # Stripe's rule about a paid invoice, not an operation it lacks: nothing is sent.
    with pytest.raises(ProviderRuleError, match="cannot delete or void"):
        await stripe.client.delete("invoice", invoice.external_id)

    types = await stripe.event_types()
    assert types[:2] == ["customer.created", "invoice.created"]
    assert types[-2:] == ["invoice.finalized", "invoice.paid"]
    assert set(types[2:-2]) == {"invoice.updated"}
    items = [i for i in await stripe.webhook_items() if i.entity_type == "invoice"]
    assert {i.external_id for i in items} == {invoice.external_id}
    # Invoice webhooks are thin: hydrating any of them reads the invoice as it now is.
    assert all(i.record is None for i in items)
    hydrated = await stripe.client.fetch("invoice", items[0].external_id)
    assert hydrated.data["status"] == "paid"
    assert hydrated.updated_at >= items[-1].occurred_at


async def test_invoices_are_deleted_as_drafts_and_voided_once_open(stripe: Stripe) -> None:
    refs = await stripe.jennys("push-cust-8")
    line = {"description": "Call-out fee", "quantity": "1", "unit_amount": 8_000}
    draft = await stripe.client.create("invoice", {"currency": "USD", "lines": [line]}, refs, "d")
    opened = await stripe.client.create(
        "invoice", {"currency": "USD", "status": "open", "lines": [line]}, refs, "o"
    )
    assert opened.data["number"] is not None

    await deleted(stripe.client, "invoice", draft.external_id)
    await stripe.client.delete("invoice", opened.external_id)
    voided = await stripe.client.fetch("invoice", opened.external_id)
    assert (voided.data["status"], voided.deleted) == ("void", False)

    ops = [(i.external_id, i.op) for i in await stripe.webhook_items()]
    assert (draft.external_id, "delete") in ops
    assert (opened.external_id, "delete") not in ops
    assert "invoice.voided" in await stripe.event_types()


async def test_invoice_lines_beyond_the_embedded_ten_are_fetched(stripe: Stripe) -> None:
    customer = await stripe.client.create("customer", JENNY, {}, "push-cust-9")
    lines = [
        {"description": f"Visit {n}", "quantity": "1", "unit_amount": 1_000 + n} for n in range(12)
    ]
    invoice = await stripe.client.create(
        "invoice",
        {"currency": "JPY", "lines": lines},
        {"customer_id": customer.external_id},
        "push-inv-12",
    )
    assert [ln["unit_amount"] for ln in invoice.data["lines"]] == [1_000 + n for n in range(12)]
    assert invoice.data["total"] == sum(1_000 + n for n in range(12))
    assert invoice.data["currency"] == "JPY"
    [item] = [i for i in await stripe.webhook_items() if i.entity_type == "invoice"][-1:]
    assert item.record is None  # hydrated: the fetch completes the lines
    hydrated = await stripe.client.fetch("invoice", item.external_id)
    assert len(hydrated.data["lines"]) == 12


async def test_payment_succeeds_and_is_refunded(stripe: Stripe) -> None:
    customer = await stripe.client.create("customer", JENNY, {}, "push-cust-10")
    refs = {"customer_id": customer.external_id, "invoice_id": "in_elsewhere"}
    data = {"amount": 12_345, "currency": "EUR", "method": "card", "reference": "Job 1042"}
    payment = await stripe.client.create("payment", data, refs, "push-pay-1")
    assert payment.external_id.startswith("pi_")
    assert payment.data["status"] == "pending"
    assert payment.refs == refs

    stripe.sim.update("payment", payment.external_id, {"status": "succeeded"})
    succeeded = await stripe.client.fetch("payment", payment.external_id)
    assert succeeded.data["status"] == "succeeded"
    assert "paid_at" in succeeded.data

    with pytest.raises(ProviderRuleError, match="is succeeded: its amount cannot change"):
        await stripe.client.update("payment", payment.external_id, {"amount": 1}, refs)
    renamed = await stripe.client.update(
        "payment", payment.external_id, {**data, "reference": "Job 1042 deposit"}, refs
    )
    assert renamed.data["reference"] == "Job 1042 deposit"

    stripe.sim.refund({"payment_intent": payment.external_id, "amount": "2345"})
    refunded = await stripe.client.fetch("payment", payment.external_id)
    assert (refunded.data["status"], refunded.data["amount"]) == ("refunded", 12_345)
    with pytest.raises(UnsupportedOperationError):
        await stripe.client.delete("payment", payment.external_id)

    items = [i for i in await stripe.webhook_items() if i.entity_type == "payment"]
    assert [i.record.data["status"] for i in items if i.record] == [
        "pending",
        "succeeded",
        "refunded",
    ]
    assert {i.external_id for i in items} == {payment.external_id}
    # Only status changes announce a PaymentIntent: the description change sent nothing.
    assert [t for t in await stripe.event_types() if not t.startswith("customer")] == [
        "payment_intent.created",
        "payment_intent.succeeded",
        "charge.refunded",
    ]


async def test_dropped_webhook_is_recovered_from_the_events_poll(stripe: Stripe) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    await stripe.control("/webhooks/drop", {"count": 1})
    created = await stripe.client.create("customer", JENNY, {}, "push-cust-11")
    assert await stripe.webhook_items() == []
    page = await stripe.client.list_page("customer", None, since)
    assert [r.external_id for r in page.records] == [created.external_id]


async def test_events_poll_pages_through_many_changes(stripe: Stripe) -> None:
    since = datetime.now(UTC) - timedelta(seconds=5)
    for index in range(103):
        stripe.sim.create("customer", stripe.sim.seed_object("customer", index))
    first = await stripe.client.list_page("customer", None, since)
    assert first.next_cursor is not None
    second = await stripe.client.list_page("customer", first.next_cursor, since)
    assert second.next_cursor is None
    assert len({r.external_id for r in first.records + second.records}) == 103


async def test_injected_429_carries_retry_after(stripe: Stripe) -> None:
    await stripe.control("/faults", {"status": 429, "count": 1, "retry_after": 7})
    with pytest.raises(ProviderError) as caught:
        await stripe.client.fetch("customer", "cus_anything")
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert caught.value.transient
    error = json.loads(caught.value.body_excerpt)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit")


async def test_injected_500_is_transient(stripe: Stripe) -> None:
    await stripe.control("/faults", {"status": 500, "count": 1})
    with pytest.raises(ProviderError) as caught:
        await stripe.client.create("customer", JENNY, {}, "push-cust-500")
    assert caught.value.status == 500
    assert caught.value.transient
    assert json.loads(caught.value.body_excerpt)["error"]["type"] == "api_error"
    # The retry with the same key creates the customer once.
    created = await stripe.client.create("customer", JENNY, {}, "push-cust-500")
    assert [c["id"] for c in stripe.sim.live("customer")] == [created.external_id]


async def test_invalid_request_is_a_400_that_is_not_transient(stripe: Stripe) -> None:
    with pytest.raises(ProviderError) as caught:
        await stripe.client.create("payment", {"amount": 500}, {}, "push-pay-no-currency")
    assert caught.value.status == 400
    assert not caught.value.transient
    error = json.loads(caught.value.body_excerpt)["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "currency")


async def test_unknown_record_is_not_found(stripe: Stripe) -> None:
    with pytest.raises(NotFoundError) as caught:
        await stripe.client.fetch("invoice", "in_missing")
    assert json.loads(caught.value.body_excerpt)["error"]["code"] == "resource_missing"


async def test_requests_carry_stripe_headers_and_form_bodies(stripe: Stripe) -> None:
    seen: list[dict[str, str]] = []

    @web.middleware
    async def spy(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append({**request.headers, "_body": (await request.read()).decode()})
        return await handler(request)  # type: ignore[no-any-return]

    sim = StripeSimulator(api_token=API_KEY)
    app = sim.app()
    app.middlewares.insert(0, spy)
    async with served(app) as url:
        client = make_client(stripe.session, url, StaticAuth.bearer(API_KEY), {})
        await client.create("customer", JENNY, {}, "push-cust-hdr")
    [request] = seen
    assert request["Authorization"] == f"Bearer {API_KEY}"
    assert request["Stripe-Version"] == STRIPE_VERSION
    assert request["Idempotency-Key"] == "push-cust-hdr"
    assert request["Content-Type"] == "application/x-www-form-urlencoded"
    assert "address%5Bline1%5D=1+Market+St" in request["_body"]
    assert "metadata%5Bcompany%5D=Rosen+Plumbing" in request["_body"]


async def test_seeded_account_lists_every_entity(stripe: Stripe) -> None:
    await stripe.control("/seed", {"count": 3})
    entities: tuple[EntityType, ...] = ("customer", "invoice", "payment")
    for entity in entities:
        page = await stripe.client.list_page(entity, None, None)
        assert len(page.records) == 3
    assert await stripe.webhook_items() == []  # seeded records existed before: no events


async def test_line_tax_is_billed_so_stripes_total_is_ours(stripe: Stripe) -> None:
    # Issue 17 item 3: 32,000 + 2,400 tax was billed as 32,000.
    refs = await stripe.jennys("push-cust-tax")
    data = {
        "currency": "USD",
        "status": "open",
        "lines": [
            {"description": "Boiler service", "quantity": "2", "unit_amount": 10_000,
             "tax_amount": 1_500},
            {"description": "Parts", "quantity": "1", "unit_amount": 12_000, "tax_amount": 900},
        ],
        "subtotal": 32_000,
        "tax": 2_400,
        "total": 34_400,
    }  # fmt: skip
    invoice = await stripe.client.create("invoice", data, refs, "push-inv-tax")
    assert (invoice.data["subtotal"], invoice.data["tax"], invoice.data["total"]) == (
        32_000,
        2_400,
        34_400,
    )
    assert invoice.data["amount_due"] == 34_400
    assert [ln["tax_amount"] for ln in invoice.data["lines"]] == [1_500, 900]
    raw = stripe.sim.get("invoice", invoice.external_id)
    assert raw["lines"]["data"][0]["tax_amounts"][0]["amount"] == 1_500
    assert raw["lines"]["data"][0]["tax_amounts"][0]["taxable_amount"] == 20_000


async def test_a_draft_line_tax_change_replaces_the_lines(stripe: Stripe) -> None:
    refs = await stripe.jennys("push-cust-tax2")
    line = {"description": "Parts", "quantity": "1", "unit_amount": 12_000, "tax_amount": 0}
    data = {"currency": "USD", "lines": [line], "subtotal": 12_000, "tax": 0, "total": 12_000}
    invoice = await stripe.client.create("invoice", data, refs, "push-inv-tax2")
    taxed = {
        "lines": [{**line, "tax_amount": 960}],
        "subtotal": 12_000,
        "tax": 960,
        "total": 12_960,
    }
    updated = await stripe.client.update("invoice", invoice.external_id, taxed, refs)
    assert (updated.data["tax"], updated.data["total"]) == (960, 12_960)


async def test_lines_stripe_would_total_differently_are_refused_showing_both(
    stripe: Stripe,
) -> None:
    # Tax-inclusive lines (Xero's kind): 11,500 per line already holds its tax.
    refs = await stripe.jennys("push-cust-tax3")
    data = {
        "currency": "USD",
        "lines": [{"quantity": "1", "unit_amount": 11_500, "tax_amount": 1_500}],
        "subtotal": 10_000,
        "tax": 1_500,
        "total": 11_500,
    }
    with pytest.raises(MappingError) as caught:
        await stripe.client.create("invoice", data, refs, "push-inv-tax3")
    assert caught.value.reason == "totals_mismatch"
    assert "13000" in caught.value.detail
    assert "11500" in caught.value.detail
    assert stripe.sim.live("invoice") == []  # nothing was created
