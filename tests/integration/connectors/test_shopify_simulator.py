"""The Shopify client against the Shopify simulator over real HTTP, webhooks included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.http import NotFoundError, ProviderError, StaticAuth, UnsupportedOperationError
from connectors.shopify import CONNECTOR
from connectors.shopify.client import ShopifyClient, make_client
from connectors.shopify.simulator import ShopifySimulator
from connectors.simkit import Fault
from connectors.spec import RateLimit
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import (
    Simulated,
    TickingClock,
    a_payment_over_the_balance_is_refused,
    assert_open_one_line_totals,
    client_of,
    deleted,
    delivered,
    every_page,
    invoiced,
    one_line_invoice,
    records_of,
    served,
    simulating,
)

SECRET = "shopify-app-secret-for-the-simulator"
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Stack(Simulated[ShopifySimulator]):
    def client(self, **settings: str) -> ShopifyClient:
        return client_of(ShopifyClient, make_client, self.session, self.url, settings)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    def make(url: str) -> ShopifySimulator:
        return ShopifySimulator(webhook_url=url, webhook_secret=SECRET, clock=TickingClock(START))

    async with simulating(make, "/webhooks/shopify/c1") as (sim, sim_url, hooks, session):
        yield Stack(sim, sim_url, hooks, session)


CUSTOMER = {
    "name": "Harbour Plumbing",
    "email": "office@harbour.example",
    "phone": "+61255501000",
    "company": "Harbour Pty Ltd",
    "address": {"line1": "1 Quay St", "city": "Sydney", "region": "NSW", "country": "AU"},
}
INVOICE = one_line_invoice("SH-100")


def parsed_topics(stack: Stack) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for hook, _, parsed in delivered(CONNECTOR, stack.inbox.hooks, SECRET, {}, now=0):
        for item in parsed.items:
            out.append((hook.headers["x-shopify-topic"], item.entity_type, item.op))
    return out


async def test_customer_create_update_delete_and_the_signed_webhooks(stack: Stack) -> None:
    client = stack.client()
    created = await client.create("customer", CUSTOMER, {}, "key-1")
    assert created.data["name"] == "Harbour Plumbing"
    assert created.data["company"] == "Harbour Pty Ltd"
    assert created.data["address"]["city"] == "Sydney"
    moved = {**CUSTOMER["address"], "city": "Manly"}  # type: ignore[dict-item]
    updated = await client.update("customer", created.external_id, {"address": moved}, {})
    assert updated.data["address"]["city"] == "Manly"
    # The default address was edited, not a second one added.
    assert len(stack.sim.get("customer", created.external_id)["addresses"]) == 1
    await deleted(client, "customer", created.external_id)
    await stack.sim.drained()
    assert parsed_topics(stack) == [
        ("customers/create", "customer", "upsert"),
        ("customers/update", "customer", "upsert"),
        ("customers/delete", "customer", "delete"),
    ]
    hook = stack.inbox.hooks[0]
    assert hook.headers["x-shopify-webhook-id"]
    assert datetime.fromisoformat(hook.headers["x-shopify-triggered-at"]) > START
    with pytest.raises(SignatureError, match="bad_signature"):
        CONNECTOR.scheme.verify(
            WebhookRequest("POST", hook.url, hook.headers, hook.body + b" "), [SECRET], 0
        )


async def test_a_duplicate_email_is_refused_in_shopifys_words(stack: Stack) -> None:
    client = stack.client()
    await client.create("customer", CUSTOMER, {}, "key-1")
    with pytest.raises(ProviderError) as caught:
        await client.create("customer", CUSTOMER, {}, "key-2")
    assert caught.value.status == 422
    assert caught.value.provider_message == "email has already been taken"
    assert not caught.value.transient


async def test_an_order_is_the_invoice_and_a_transaction_settles_it(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    assert_open_one_line_totals(invoice)
    assert invoice.data["amount_due"] == 27_500
    assert invoice.data["number"] == "SH-100"
    assert invoice.refs == refs
    # A retried create finds the order the first one made (its source_identifier).
    again = await client.create("invoice", INVOICE, refs, "i")
    assert again.external_id == invoice.external_id
    assert len(stack.sim.live("invoice")) == 1
    paid = {"amount": 10_000, "currency": "AUD", "status": "succeeded", "reference": "EFT-1"}
    part = await client.create("payment", paid, {"invoice_id": invoice.external_id}, "p1")
    assert part.external_id.startswith(f"{invoice.external_id}:")
    assert part.refs == {"invoice_id": invoice.external_id}
    assert part.data["reference"] == "EFT-1"
    assert (await client.fetch("invoice", invoice.external_id)).data["amount_due"] == 17_500
    rest = {"amount": 17_500, "currency": "AUD", "status": "succeeded", "method": "card"}
    await client.create("payment", rest, {"invoice_id": invoice.external_id}, "p2")
    settled = await client.fetch("invoice", invoice.external_id)
    assert (settled.data["status"], settled.data["amount_due"]) == ("paid", 0)
    fetched = await client.fetch("payment", part.external_id)
    assert fetched.data == part.data
    await stack.sim.drained()
    topics = [t for t, _, _ in parsed_topics(stack)]
    assert topics.count("order_transactions/create") == 2
    assert "orders/paid" in topics


async def test_what_shopify_does_not_change_is_a_provider_rule_refusal(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    callout = {"description": "Callout", "quantity": "1", "unit_amount": 5_000}
    more = [*INVOICE["lines"], callout]
    with pytest.raises(ProviderRuleError, match="lines cannot change") as caught:
        await client.update("invoice", invoice.external_id, {"lines": more}, refs)
    assert caught.value.written is not None
    with pytest.raises(ProviderRuleError, match="draft"):
        await client.create("invoice", {**INVOICE, "status": "draft"}, refs, "d")
    payment = await client.create(
        "payment",
        {"amount": 27_500, "currency": "AUD", "status": "succeeded"},
        {"invoice_id": invoice.external_id},
        "p",
    )
    with pytest.raises(ProviderRuleError, match="never edited"):
        await client.update("payment", payment.external_id, {"amount": 100}, {})
    # The same data is no change: nothing refused.
    assert (await client.update("payment", payment.external_id, payment.data, {})) == payment
    with pytest.raises(ProviderRuleError, match="not cancelled from here"):
        await client.update("invoice", invoice.external_id, {"status": "void"}, refs)
    with pytest.raises(ProviderRuleError, match="is paid"):
        await client.delete("invoice", invoice.external_id)
    with pytest.raises(ProviderRuleError, match="customer has orders"):
        await client.delete("customer", customer.external_id)
    with pytest.raises(UnsupportedOperationError):
        await client.delete("payment", payment.external_id)


async def test_an_unpaid_order_is_cancelled_and_deleted(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    assert invoice.data["due_on"] == "2026-12-31"
    later = await client.update("invoice", invoice.external_id, {"due_on": "2027-01-15"}, refs)
    assert later.data["due_on"] == "2027-01-15"
    void = await client.update("invoice", invoice.external_id, {"status": "void"}, refs)
    assert (void.data["status"], void.data["amount_due"]) == ("void", 0)
    await deleted(client, "invoice", invoice.external_id)


async def test_backfill_pages_through_every_record_by_link_header(stack: Stack) -> None:
    stack.sim.seed(260)  # over one page of 250
    client = stack.client()
    customers = await every_page(client, "customer")
    assert [len(p.records) for p in customers] == [250, 10]
    assert len({r.external_id for r in records_of(customers)}) == 260
    invoices = records_of(await every_page(client, "invoice"))
    assert len(invoices) == 260
    assert all(r.data["subtotal"] + r.data["tax"] == r.data["total"] for r in invoices)
    payments = records_of(await every_page(client, "payment"))
    assert len(payments) == 260
    assert all(r.refs["invoice_id"] == r.external_id.split(":")[0] for r in payments)
    # Each second page was asked with page_info and limit alone: the simulator refuses
    # any filter beside page_info (test_a_page_info_with_another_filter_is_refused...).


async def test_reconcile_lists_only_what_changed_since(stack: Stack) -> None:
    stack.sim.seed(3)
    client = stack.client()
    since = stack.sim.clock.now  # type: ignore[attr-defined]
    stack.sim.update("customer", stack.sim.live("customer")[1]["id"].__str__(), {"note": "moved"})
    changed = records_of(await every_page(client, "customer", since))
    assert [r.data.get("notes") for r in changed] == ["moved"]


async def test_a_page_info_with_another_filter_is_refused_as_shopify_does(stack: Stack) -> None:
    stack.sim.seed(3)
    client = stack.client()
    with pytest.raises(ProviderError) as caught:
        await client._call("GET", "/customers.json", params={"page_info": "x", "email": "a"})
    assert caught.value.status == 400
    assert "page_info" in caught.value.provider_message


async def test_a_429_is_transient_and_carries_retry_after(stack: Stack) -> None:
    stack.sim.faults.append(Fault(429, 1, retry_after=2.0))
    client = stack.client()
    with pytest.raises(ProviderError) as caught:
        await client.list_page("customer", None, None)
    assert caught.value.status == 429
    assert caught.value.retry_after == 2.0
    assert caught.value.transient


async def test_the_leaky_bucket_answers_429_over_40_and_reports_its_level() -> None:
    sim = ShopifySimulator(rate_limit=RateLimit(rate=2, per_seconds=1, burst=40))
    async with served(sim.app()) as url, aiohttp.ClientSession() as session:
        statuses, limits = [], []
        for _ in range(41):
            async with session.get(
                f"{url}/admin/api/2024-10/customers.json",
                headers={"X-Shopify-Access-Token": "sim-token"},
            ) as response:
                statuses.append(response.status)
                limits.append(response.headers["X-Shopify-Shop-Api-Call-Limit"])
                body = await response.json()
        assert statuses[:40] == [200] * 40
        assert statuses[40] == 429
        assert limits[0] == "1/40"
        assert limits[-1] == "40/40"
        assert body["errors"].startswith("Exceeded 2 calls per second")
        assert float(response.headers["Retry-After"]) > 0


async def test_the_client_waits_when_the_stores_bucket_is_nearly_full() -> None:
    sim = ShopifySimulator(rate_limit=RateLimit(rate=2, per_seconds=1, burst=40))
    sim.leaky.level = 37  # another worker of ours spent most of it
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        sim.leaky.level = max(0.0, sim.leaky.level - seconds * 2)

    async with served(sim.app()) as url, aiohttp.ClientSession() as session:
        client = ShopifyClient(session, url, StaticAuth.bearer("sim-token"), {}, sleep=sleep)
        for _ in range(5):
            await client.list_page("customer", None, None)
    assert client.bucket is not None
    assert waits, "the client never waited for a bucket it saw at 38/40"
    assert all(r.get("status") == 200 for r in sim.log.requests)
    assert client.bucket[0] <= 40 - 4 + 1


async def test_a_token_goes_in_shopifys_header_and_a_wrong_one_is_refused(stack: Stack) -> None:
    bad = make_client(stack.session, stack.url, StaticAuth.bearer("wrong"), {})
    with pytest.raises(ProviderError) as caught:
        await bad.list_page("customer", None, None)
    assert caught.value.status == 401
    versioned = stack.client(shopify_api_version="2025-01")
    with pytest.raises(NotFoundError):
        await versioned.list_page("customer", None, None)  # the simulator speaks 2024-10


async def test_a_payment_over_what_the_order_owes_is_a_provider_rule_refusal(
    stack: Stack,
) -> None:
    # Shopify refuses a sale over the order's outstanding balance (422).
    client = stack.client()
    _, invoice = await invoiced(client, CUSTOMER, INVOICE)
    await a_payment_over_the_balance_is_refused(client, invoice, 27_500, refused="outstanding")
    assert (await client.fetch("invoice", invoice.external_id)).data["amount_due"] == 27_500


async def test_a_transaction_create_retried_after_its_answer_was_lost_pays_once(
    stack: Stack,
) -> None:
    # Shopify's REST transactions take no idempotency key: Shopify recorded the payment,
    # its answer was lost (a 500), and outbound retried the push with the same key. The
    # retry must find the transaction the first one made, not pay the order again (it
    # owed enough for both, so the balance did not stop the second).
    client = stack.client()
    _, invoice = await invoiced(client, CUSTOMER, INVOICE)
    part = {"amount": 10_000, "currency": "AUD", "status": "succeeded", "reference": "EFT-9"}
    refs = {"invoice_id": invoice.external_id}
    stack.sim.faults.append(Fault(500, 1, path="/transactions.json", method="POST", after=True))
    with pytest.raises(ProviderError) as lost:
        await client.create("payment", part, refs, "crmsync-conn-payment")
    assert lost.value.status == 500
    assert len(stack.sim.live("payment")) == 1  # Shopify recorded it
    again = await client.create("payment", part, refs, "crmsync-conn-payment")
    [transaction] = stack.sim.live("payment")
    assert again.external_id == f"{invoice.external_id}:{transaction['id']}"
    assert again.data["reference"] == "EFT-9"
    assert (await client.fetch("invoice", invoice.external_id)).data["amount_due"] == 17_500
    # Another payment of the same amount and reference is another payment.
    second = await client.create("payment", part, refs, "crmsync-conn-payment-2")
    assert second.external_id != again.external_id
    assert len(stack.sim.live("payment")) == 2
