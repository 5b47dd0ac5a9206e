"""The Ascora client against the Ascora simulator over real HTTP, webhooks included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from connectors.ascora import CONNECTOR
from connectors.ascora.client import AscoraClient, make_client
from connectors.ascora.simulator import AscoraSimulator
from connectors.http import (
    AuthError,
    NotFoundError,
    ProviderError,
    StaticAuth,
    UnsupportedOperationError,
    send,
)
from connectors.spec import WebhookItem
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import (
    Hook,
    deleted,
    delivered,
    every_page,
    records_of,
    simulating,
)

COMPANY = "ACME"
SETTINGS = {"company_code": COMPANY, "page_size": 2}


class Clock:
    """The simulator's clock, moved by the test: lastModified values are then exact."""

    def __init__(self) -> None:
        self.now = datetime(2026, 2, 17, 21, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@dataclass
class Env:
    sim: AscoraSimulator
    client: AscoraClient
    session: aiohttp.ClientSession
    base_url: str
    secret: str
    clock: Clock
    received: list[Hook] = field(default_factory=list)

    async def webhooks(self) -> list[tuple[dict[str, Any], WebhookItem | None]]:
        """Every webhook received so far (then forgotten): verified, then parsed."""
        await self.sim.drained()
        out: list[tuple[dict[str, Any], WebhookItem | None]] = []
        now = self.clock.now.timestamp()
        for hook, verified, parsed in delivered(
            CONNECTOR, self.received, self.secret, SETTINGS, now=now, url="http://127.0.0.1/hooks"
        ):
            assert verified.provider_event_id == hook.headers["webhook-id"]
            assert len(parsed.items) + parsed.ignored == 1
            out.append((json.loads(hook.body), parsed.items[0] if parsed.items else None))
        self.received.clear()
        return out

    async def control(self, path: str, body: dict[str, Any]) -> Any:
        return await send(self.session, "POST", f"{self.base_url}/_sim/{path}", json_body=body)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    secret = CONNECTOR.scheme.generate_secret()
    clock = Clock()

    def make(url: str) -> AscoraSimulator:
        return AscoraSimulator(
            webhook_url=url, webhook_secret=secret, company_code=COMPANY, clock=clock
        )

    async with simulating(make, status=204) as (sim, base_url, hooks, session):
        client = make_client(session, base_url, StaticAuth.bearer(sim.api_token), SETTINGS)
        yield Env(sim, client, session, base_url, secret, clock, hooks.hooks)


async def customer(env: Env, name: str = "Harbour Plumbing") -> str:
    record = await env.client.create("customer", {"name": name}, {}, f"key-{name}")
    return record.external_id


async def invoice(env: Env, customer_id: str, currency: str = "AUD", **extra: Any) -> str:
    data = {
        "currency": currency,
        "status": "open",
        "lines": [
            {"description": "Labour", "quantity": "1.5", "unit_amount": 9500, "tax_amount": 1425},
            {"description": "Washer", "quantity": "3", "unit_amount": 10, "tax_amount": 3},
        ],
        **extra,
    }
    record = await env.client.create("invoice", data, {"customer_id": customer_id}, "inv")
    return record.external_id


# --- the lifecycle ---------------------------------------------------------------------------


async def test_customer_create_fetch_update_delete_with_verified_webhooks(env: Env) -> None:
    data = {
        "name": "Harbour Plumbing Pty Ltd",
        "email": "Accounts@Harbour.com.au",
        "phone": "(02) 9555 0101",
        "address": {"line1": "10 George Street", "city": "Sydney", "country": "AU"},
    }
    created = await env.client.create("customer", data, {}, "first-push")
    assert created.data["email"] == "accounts@harbour.com.au"
    assert created.data["address"]["city"] == "Sydney"
    fetched = await env.client.fetch("customer", created.external_id)
    assert fetched == created

    updated = await env.client.update("customer", created.external_id, {"phone": None}, {})
    assert updated.data["phone"] is None
    assert updated.data["name"] == data["name"]
    assert updated.updated_at > created.updated_at

    gone = await deleted(env.client, "customer", created.external_id)
    assert json.loads(gone.body_excerpt)["error"]["code"] == "not_found"

    hooks = await env.webhooks()
    assert [body["type"] for body, _ in hooks] == [
        "customer.created",
        "customer.updated",
        "customer.deleted",
    ]
    items = [item for _, item in hooks]
    assert all(item is not None for item in items)
    assert [(i.op, i.external_id) for i in items if i] == [
        ("upsert", created.external_id),
        ("upsert", created.external_id),
        ("delete", created.external_id),
    ]
    assert items[0] is not None
    assert items[0].record is not None
    assert items[0].record.data == created.data
    assert items[1] is not None
    assert items[1].record == updated


async def test_webhooks_carry_the_record_as_it_was_at_each_change(env: Env) -> None:
    customer_id = await customer(env)
    await env.webhooks()
    # Two edits with no await between them: both webhooks queue before either is sent.
    env.sim.update("customer", customer_id, {"customerName": "First"})
    env.sim.update("customer", customer_id, {"customerName": "Second"})
    names = [item.record.data["name"] for _, item in await env.webhooks() if item and item.record]
    assert names == ["First", "Second"]


async def test_list_page_walks_every_page_oldest_change_first(env: Env) -> None:
    ids = []
    for n in range(5):
        env.clock.advance(1)
        ids.append(await customer(env, f"Customer {n}"))
    env.clock.advance(1)
    await env.client.update("customer", ids[0], {"notes": "moved to the end"}, {})

    pages = await every_page(env.client, "customer")
    seen = [r.external_id for r in records_of(pages)]
    assert len(pages) == 3
    assert seen == [*ids[1:], ids[0]]


async def test_list_page_returns_changes_since_modified_since_inclusive(env: Env) -> None:
    ids = []
    for n in range(4):
        env.clock.advance(60)
        ids.append(await customer(env, f"Customer {n}"))
    since = (await env.client.fetch("customer", ids[1])).updated_at
    page = await env.client.list_page("customer", None, since)
    assert [r.external_id for r in page.records] == ids[1:3]
    rest = await env.client.list_page("customer", page.next_cursor, since)
    assert [r.external_id for r in rest.records] == ids[3:]
    assert rest.next_cursor is None
    later = await env.client.list_page("customer", None, env.clock.advance(60))
    assert (later.records, later.next_cursor) == ((), None)


async def test_create_with_the_same_idempotency_key_creates_once(env: Env) -> None:
    first = await env.client.create("customer", {"name": "Once"}, {}, "same-key")
    again = await env.client.create("customer", {"name": "Once"}, {}, "same-key")
    assert again.external_id == first.external_id
    assert len(env.sim.live("customer")) == 1


# --- jobs: status endpoint and notes ---------------------------------------------------------


async def test_job_status_change_sends_job_updated_with_the_new_status(env: Env) -> None:
    customer_id = await customer(env)
    start = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)
    job = await env.client.create(
        "job",
        {
            "title": "Replace hot water system",
            "status": "scheduled",
            "scheduled_start": start.isoformat(),
            "scheduled_end": (start + timedelta(hours=2)).isoformat(),
            "site_address": {"line1": "10 George Street", "country": "AU"},
        },
        {"customer_id": customer_id},
        "job-1",
    )
    assert job.refs == {"customer_id": customer_id}
    assert job.data["status"] == "scheduled"
    await env.webhooks()

    moved = await env.client.set_job_status(job.external_id, "in_progress")
    assert moved.data["status"] == "in_progress"
    hooks = await env.webhooks()
    assert [body["type"] for body, _ in hooks] == ["job.updated"]
    assert hooks[0][0]["data"]["status"] == "InProgress"
    item = hooks[0][1]
    assert item is not None
    assert item.record is not None
    assert (item.op, item.record.data["status"]) == ("upsert", "in_progress")
    assert item.record.refs == {"customer_id": customer_id}

    # A sync update that changes the status goes through the status endpoint too.
    done = await env.client.update(
        "job", job.external_id, {"status": "completed", "description": "All done"}, {}
    )
    assert (done.data["status"], done.data["description"]) == ("completed", "All done")
    statuses = [
        item.record.data["status"] for _, item in await env.webhooks() if item and item.record
    ]
    assert statuses == ["in_progress", "completed"]
    paths = [(r["method"], r["path"]) for r in env.sim.log.requests][-2:]
    assert paths == [
        ("PATCH", f"/api/v1/jobs/{job.external_id}"),
        ("PATCH", f"/api/v1/jobs/{job.external_id}/status"),
    ]


async def test_a_status_in_the_job_patch_is_a_400_that_is_not_transient(env: Env) -> None:
    customer_id = await customer(env)
    job = await env.client.create("job", {"title": "Fix tap"}, {"customer_id": customer_id}, "j")
    with pytest.raises(ProviderError) as caught:
        await send(
            env.session,
            "PATCH",
            f"{env.base_url}/api/v1/jobs/{job.external_id}",
            auth=StaticAuth.bearer(env.sim.api_token),
            headers={"X-Company-Code": COMPANY},
            json_body={"status": "Completed"},
        )
    assert caught.value.status == 400
    assert not caught.value.transient
    error = json.loads(caught.value.body_excerpt)["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == ["status"]


async def test_adding_a_note_updates_the_job(env: Env) -> None:
    customer_id = await customer(env)
    job = await env.client.create("job", {"title": "Fix tap"}, {"customer_id": customer_id}, "j")
    await env.webhooks()
    note = await env.client.add_job_note(job.external_id, "Customer asked for a morning slot")
    assert note["text"] == "Customer asked for a morning slot"
    hooks = await env.webhooks()
    assert [body["type"] for body, _ in hooks] == ["job.updated"]
    assert hooks[0][0]["data"]["notes"] == [note]


async def test_deleted_job_is_gone(env: Env) -> None:
    customer_id = await customer(env)
    job = await env.client.create("job", {"title": "Fix tap"}, {"customer_id": customer_id}, "j")
    await deleted(env.client, "job", job.external_id)
    with pytest.raises(NotFoundError):
        await env.client.delete("job", job.external_id)


# --- invoices and payments -------------------------------------------------------------------


async def test_recording_a_payment_creates_a_payment_referencing_the_invoice(env: Env) -> None:
    customer_id = await customer(env)
    invoice_id = await invoice(env, customer_id)
    created = await env.client.fetch("invoice", invoice_id)
    # 1.5 x 95.00 + 3 x 0.10 = 142.80; tax 14.25 + 0.03 = 14.28
    assert (created.data["subtotal"], created.data["tax"], created.data["total"]) == (
        14280,
        1428,
        15708,
    )
    assert created.data["status"] == "open"
    await env.webhooks()

    payment = await env.client.create(
        "payment",
        {"amount": 10000, "currency": "AUD", "method": "Card", "reference": "RCPT-1"},
        {"invoice_id": invoice_id},
        "pay-1",
    )
    assert payment.refs == {"invoice_id": invoice_id, "customer_id": customer_id}
    assert (payment.data["amount"], payment.data["status"]) == (10000, "succeeded")
    assert await env.client.fetch("payment", payment.external_id) == payment

    hooks = await env.webhooks()
    assert [body["type"] for body, _ in hooks] == ["payment.created", "invoice.updated"]
    paid_item, invoice_item = (item for _, item in hooks)
    assert paid_item is not None
    assert paid_item.record is not None
    assert paid_item.record.refs == {"invoice_id": invoice_id, "customer_id": customer_id}
    assert invoice_item is not None
    assert invoice_item.record is not None
    assert invoice_item.record.data["amount_due"] == 5708
    assert hooks[1][0]["data"]["status"] == "PartiallyPaid"

    rest = await env.client.create(
        "payment", {"amount": 5708, "currency": "AUD"}, {"invoice_id": invoice_id}, "pay-2"
    )
    settled = await env.client.fetch("invoice", invoice_id)
    assert (settled.data["status"], settled.data["amount_due"]) == ("paid", 0)

    await deleted(env.client, "payment", rest.external_id)
    reopened = await env.client.fetch("invoice", invoice_id)
    assert (reopened.data["status"], reopened.data["amount_due"]) == ("open", 5708)


async def test_an_overpayment_is_refused_by_ascoras_rule_and_not_transient(env: Env) -> None:
    # Ascora's business rule about the invoice as it stands (README, "Invoice lifecycle"):
    # a provider_rule refusal with its words, never retried.
    invoice_id = await invoice(env, await customer(env))
    with pytest.raises(ProviderRuleError) as caught:
        await env.client.create(
            "payment", {"amount": 999_999, "currency": "AUD"}, {"invoice_id": invoice_id}, "p"
        )
    assert caught.value.reason == "provider_rule"
    assert "(code overpayment)" in caught.value.detail


async def test_yen_amounts_stay_whole_yen_through_the_api(env: Env) -> None:
    customer_id = await customer(env)
    data = {
        "currency": "JPY",
        "status": "open",
        "lines": [{"description": "Inspection", "quantity": "2", "unit_amount": 5500}],
    }
    created = await env.client.create("invoice", data, {"customer_id": customer_id}, "jpy")
    assert env.sim.store["invoice"][created.external_id]["lines"][0]["unitPrice"] == "5500"
    assert (created.data["total"], created.data["currency"]) == (11000, "JPY")
    payment = await env.client.create(
        "payment", {"amount": 1, "currency": "JPY"}, {"invoice_id": created.external_id}, "p"
    )
    assert env.sim.store["payment"][payment.external_id]["amount"] == "1"
    assert payment.data["amount"] == 1


async def test_an_invoice_update_with_the_whole_record_sends_only_what_may_change(
    env: Env,
) -> None:
    """The pusher updates with the whole canonical record, customer ref and currency
    included; Ascora takes those on create only, so the PATCH must leave them out."""
    customer_id = await customer(env)
    invoice_id = await invoice(env, customer_id)
    current = await env.client.fetch("invoice", invoice_id)
    changed = {**current.data, "due_on": "2026-12-24"}
    updated = await env.client.update("invoice", invoice_id, changed, current.refs)
    assert updated.data["due_on"] == "2026-12-24"
    patch = [r for r in env.sim.log.requests if r["method"] == "PATCH"]
    assert len(patch) == 1


async def test_deleting_an_invoice_voids_it(env: Env) -> None:
    invoice_id = await invoice(env, await customer(env))
    await env.client.delete("invoice", invoice_id)
    voided = await env.client.fetch("invoice", invoice_id)
    assert (voided.data["status"], voided.deleted) == ("void", False)
    hooks = await env.webhooks()
    assert hooks[-1][0]["type"] == "invoice.updated"
    assert hooks[-1][1] is not None
    assert hooks[-1][1].record is not None
    assert hooks[-1][1].record.data["status"] == "void"


async def test_a_void_invoice_is_final_by_ascoras_rule(env: Env) -> None:
    # Ascora answers 422 invoice_void to any change of a void invoice: its rule, parked
    # once as provider_rule (a 1,000-op convergence run found it a provider_4xx).
    invoice_id = await invoice(env, await customer(env))
    await env.client.delete("invoice", invoice_id)
    current = await env.client.fetch("invoice", invoice_id)
    with pytest.raises(ProviderRuleError) as caught:
        await env.client.update(
            "invoice", invoice_id, {**current.data, "due_on": "2026-12-24"}, current.refs
        )
    assert caught.value.reason == "provider_rule"
    assert "(code invoice_void)" in caught.value.detail
    assert invoice_id in caught.value.detail
    assert (await env.client.fetch("invoice", invoice_id)).data["status"] == "void"


async def test_payments_cannot_be_edited(env: Env) -> None:
    with pytest.raises(UnsupportedOperationError) as caught:
        await env.client.update("payment", "p1", {"reference": "x"}, {})
    assert not caught.value.transient


async def test_every_seeded_record_maps(env: Env) -> None:
    await env.control("seed", {"count": 7})
    for entity_type in ("customer", "job", "invoice", "payment"):
        page = await env.client.list_page(entity_type, None, None)
        assert len(page.records) == 2
        cursor, count = page.next_cursor, 2
        while cursor is not None:
            page = await env.client.list_page(entity_type, cursor, None)
            count += len(page.records)
            cursor = page.next_cursor
        assert count == 7
    assert await env.webhooks() == []  # seeded records existed before: no webhooks


# --- errors ------------------------------------------------------------------------------------


async def test_injected_429_surfaces_with_retry_after(env: Env) -> None:
    await env.control("faults", {"status": 429, "count": 1, "retry_after": 7})
    with pytest.raises(ProviderError) as caught:
        await env.client.list_page("customer", None, None)
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    assert caught.value.transient
    assert json.loads(caught.value.body_excerpt)["error"]["code"] == "rate_limited"
    assert (await env.client.list_page("customer", None, None)).records == ()


async def test_injected_500_is_transient(env: Env) -> None:
    await env.control("faults", {"status": 500, "count": 1})
    with pytest.raises(ProviderError) as caught:
        await env.client.fetch("customer", "c1")
    assert (caught.value.status, caught.value.transient) == (500, True)
    assert json.loads(caught.value.body_excerpt)["error"]["code"] == "internal_error"


async def test_a_wrong_company_code_is_an_auth_error(env: Env) -> None:
    other = make_client(
        env.session, env.base_url, StaticAuth.bearer(env.sim.api_token), {"company_code": "NOPE"}
    )
    with pytest.raises(AuthError) as caught:
        await other.list_page("customer", None, None)
    assert caught.value.status == 403
    assert json.loads(caught.value.body_excerpt)["error"]["code"] == "company_forbidden"


async def test_a_wrong_token_is_an_auth_error(env: Env) -> None:
    other = make_client(env.session, env.base_url, StaticAuth.bearer("wrong"), SETTINGS)
    with pytest.raises(AuthError) as caught:
        await other.fetch("customer", "c1")
    assert caught.value.status == 401


def test_a_connection_without_a_company_code_is_refused() -> None:
    with pytest.raises(ValueError, match="company_code"):
        AscoraClient(None, "http://x", StaticAuth.bearer("t"), {})  # type: ignore[arg-type]
