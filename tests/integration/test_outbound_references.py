"""Outbound and the records a record names (issue 17 item 1, DESIGN invariant 10): a push
waits for its references only on targets that can hold them, and never for ever.

Real Xero and Ascora simulators over HTTP, the test's own Postgres."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from connectors.runtime import Clients, credentials_json
from connectors.simkit import Fault
from connectors.xero.client import XeroClient
from crmsync.application.connection_runtime import stored_clients
from crmsync.common.connections import create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.pushes import Job, claim
from crmsync.demo import sims
from services.outbound.pusher import Pusher, PushPolicy
from services.outbound.queue import enqueue
from tests.e2e.sync_harness import SimulatedCrm, simulated
from tests.integration.erp_to_ascora import CALLOUT_INVOICE

MAX_ATTEMPTS = 3


@dataclass
class Env:
    pool: asyncpg.Pool
    keyring: KeyRing
    tenant: str
    tenant_id: uuid.UUID
    clients: Clients
    pusher: Pusher

    async def connect(
        self, crm: SimulatedCrm, name: str, settings: dict[str, Any] | None = None
    ) -> uuid.UUID:
        connection_id = await sims.connect(
            self.pool,
            self.keyring,
            crm,
            tenant=self.tenant,
            name=name,
            ingest_url="http://127.0.0.1:9",
            settings=settings,
        )
        crm.sim.webhook_url = None  # no ingest here: the pushes are what is tested
        return connection_id

    async def record(self, entity_type: str, data: dict[str, Any]) -> uuid.UUID:
        table = {"customer": "customers", "job": "jobs", "invoice": "invoices"}.get(
            entity_type, "payments"
        )
        entity_id: uuid.UUID = await self.pool.fetchval(
            f"INSERT INTO {table} (tenant_id, data) VALUES ($1, $2) RETURNING id",  # noqa: S608
            self.tenant_id,
            data,
        )
        return entity_id

    async def edit(self, entity_type: str, entity_id: uuid.UUID, data: dict[str, Any]) -> int:
        """A new version of the record, as the processor would commit it."""
        version: int = await self.pool.fetchval(
            f"UPDATE {entity_type}s SET data = $2, version = version + 1"  # noqa: S608
            " WHERE id = $1 RETURNING version",
            entity_id,
            data,
        )
        return version

    async def push(
        self, target: uuid.UUID, entity_type: str, entity_id: uuid.UUID, version: int = 1
    ) -> None:
        now = datetime.now(UTC)
        await enqueue(
            self.pool, [(self.tenant_id, target, entity_type, entity_id, version, None, now)]
        )

    async def run_due(self) -> list[Job]:
        await self.pool.execute("UPDATE push_jobs SET next_attempt_at = now()")
        jobs = (await claim(self.pool, 100, lease_seconds=0.5)).jobs
        for job in jobs:
            await self.pusher.run(job)
        return jobs

    async def queued(self) -> list[tuple[str, int]]:
        rows = await self.pool.fetch("SELECT entity_type, attempts FROM push_jobs ORDER BY id")
        return [(r["entity_type"], r["attempts"]) for r in rows]

    async def dead(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch("SELECT * FROM dead_letters WHERE stage = 'outbound'"))


@pytest.fixture
async def env(pool: asyncpg.Pool) -> AsyncIterator[Env]:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        origin = await create_connection(
            conn, keyring, tenant=tenant, provider="internal", name="erp", webhook_secret=None
        )
    session = aiohttp.ClientSession()
    clients = stored_clients(pool, keyring, session)
    pusher = Pusher(pool, clients, PushPolicy(max_attempts=MAX_ATTEMPTS))
    try:
        yield Env(pool, keyring, tenant, origin.tenant_id, clients, pusher)
    finally:
        await session.close()


@pytest.fixture
async def xero() -> AsyncIterator[SimulatedCrm]:
    async with simulated("xero") as crm:
        yield crm


CUSTOMER = {"name": "Harbour Plumbing", "email": "office@harbour.example"}
INVOICE = CALLOUT_INVOICE


async def test_an_invoice_naming_a_job_reaches_a_target_that_holds_no_jobs(
    env: Env, xero: SimulatedCrm
) -> None:
    target = await env.connect(xero, "xero")
    customer = await env.record("customer", CUSTOMER)
    job = await env.record("job", {"title": "Fix the leak", "customer_id": str(customer)})
    invoice = await env.record(
        "invoice", {**INVOICE, "customer_id": str(customer), "job_id": str(job)}
    )
    await env.push(target, "invoice", invoice)
    await env.run_due()  # the invoice waits for its customer only
    assert await env.queued() == [("invoice", 1), ("customer", 0)]
    await env.run_due()  # the customer
    await env.run_due()  # the invoice
    [sent] = xero.sim.live("invoice")
    assert sent["InvoiceNumber"] == "INV-100"
    assert await env.queued() == []
    assert await env.dead() == []


async def test_a_job_push_to_a_target_that_holds_no_jobs_is_skipped_by_rule(
    env: Env, xero: SimulatedCrm
) -> None:
    target = await env.connect(xero, "xero")
    job = await env.record("job", {"title": "Fix the leak"})
    await env.push(target, "job", job)  # as a redrive, or the old _missing_refs, queued it
    before = len(xero.sim.log.requests)
    await env.run_due()
    assert await env.queued() == []
    assert await env.dead() == []
    assert len(xero.sim.log.requests) == before


async def test_a_reference_that_never_reaches_the_target_is_a_dead_letter_naming_it(
    env: Env, xero: SimulatedCrm
) -> None:
    # Xero holds customers, but this connection does not take them from us: the invoice's
    # customer can only arrive by a link from Xero's side, and here it never does.
    target = await env.connect(xero, "xero", settings={"entity_types": ["invoice", "payment"]})
    customer = await env.record("customer", CUSTOMER)
    invoice = await env.record("invoice", {**INVOICE, "customer_id": str(customer)})
    await env.push(target, "invoice", invoice)
    for _ in range(MAX_ATTEMPTS + 2):
        await env.run_due()
    assert xero.sim.live("customer") == []
    assert xero.sim.live("invoice") == []
    assert await env.queued() == []
    [dead] = await env.dead()
    assert dead["reason"] == "missing_reference"
    assert f"customer_id {customer}" in dead["detail"]


async def test_a_dead_letter_keeps_xeros_validation_errors_past_the_excerpt(
    env: Env, xero: SimulatedCrm
) -> None:
    target = await env.connect(xero, "xero")
    customer = await env.record("customer", CUSTOMER)
    # Linked to a contact Xero does not have: Xero answers 400, its ValidationErrors after
    # an echo of the whole invoice (thirty lines: far past the 500-character excerpt).
    await env.pool.execute(
        "INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,"
        " external_id) VALUES ($1, $2, 'customer', $3, $4)",
        env.tenant_id,
        target,
        customer,
        str(uuid.uuid4()),
    )
    lines = [{"description": f"Line {n}", "quantity": "1", "unit_amount": 500} for n in range(30)]
    invoice = await env.record(
        "invoice",
        {**INVOICE, "lines": lines, "subtotal": 15000, "customer_id": str(customer)},
    )
    await env.push(target, "invoice", invoice)
    await env.run_due()
    [dead] = await env.dead()
    assert dead["reason"] == "provider_4xx"
    assert "The Contact specified could not be found" in dead["detail"]
    payload = json.loads(dead["payload"])
    assert payload["provider_message"] == "The Contact specified could not be found"
    assert "could not be found" not in payload["response_excerpt"]


async def invoice_at(
    env: Env, crm: SimulatedCrm, provider: str, **changed: Any
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, dict[str, Any]]:
    """A customer and its INVOICE (with ``changed`` fields) pushed to a new connection to
    ``crm``: the connection, the customer and invoice ids, and the invoice as ``crm`` holds it."""
    target = await env.connect(crm, provider)
    customer = await env.record("customer", CUSTOMER)
    invoice = await env.record("invoice", {**INVOICE, **changed, "customer_id": str(customer)})
    await env.push(target, "customer", customer)
    await env.push(target, "invoice", invoice)
    await env.run_due()
    await env.run_due()
    [sent] = crm.sim.live("invoice")
    return target, customer, invoice, sent


async def test_a_paid_xero_invoice_gets_its_payment_and_no_edit_and_one_dead_letter(
    env: Env, xero: SimulatedCrm
) -> None:
    target, customer, invoice, sent = await invoice_at(env, xero, "xero")
    assert sent["Status"] == "AUTHORISED"
    payment = await env.record(
        "payment",
        {
            "invoice_id": str(invoice),
            "amount": 15000,
            "currency": "NZD",
            "status": "succeeded",
            "paid_at": "2026-12-01T10:00:00Z",
        },
    )
    await env.push(target, "payment", payment)
    await env.run_due()
    [paid] = xero.sim.live("payment")
    assert paid["Invoice"]["InvoiceID"] == sent["InvoiceID"]
    assert xero.sim.get("invoice", sent["InvoiceID"])["Status"] == "PAID"

    # The invoice is paid here too: nothing to send (Xero set PAID itself), no write.
    settled = {**INVOICE, "customer_id": str(customer), "status": "paid", "amount_due": 0}
    await env.push(target, "invoice", invoice, await env.edit("invoice", invoice, settled))
    before = len(xero.sim.log.requests)
    await env.run_due()
    assert [r["method"] for r in list(xero.sim.log.requests)[before:]] == ["GET"]
    assert await env.dead() == []

    # Then edited: Xero refuses edits to an invoice with a payment allocated, so nothing is
    # sent; the refusal is one dead letter with the rule, and nothing is retried.
    edited_lines = [{"description": "Callout, after hours", "quantity": "1", "unit_amount": 15000}]
    edited = {**settled, "lines": edited_lines}
    version = await env.edit("invoice", invoice, edited)
    await env.push(target, "invoice", invoice, version)
    before = len(xero.sim.log.requests)
    for _ in range(MAX_ATTEMPTS + 1):
        await env.run_due()
    assert [r["method"] for r in list(xero.sim.log.requests)[before:]] == ["GET"]
    assert xero.sim.get("invoice", sent["InvoiceID"])["LineItems"][0]["Description"] == "Callout"
    assert await env.queued() == []
    [dead] = await env.dead()
    assert dead["reason"] == "provider_rule"
    assert "payment or credit note allocated" in dead["detail"]
    assert "lines" in dead["detail"]
    assert json.loads(dead["payload"])["version"] == version
    link = await env.pool.fetchrow(
        "SELECT last_pushed_version FROM entity_links WHERE entity_id = $1", invoice
    )
    assert link["last_pushed_version"] == version - 1


async def test_a_payment_allocated_in_xero_between_our_read_and_our_write_is_xeros_rule(
    env: Env, xero: SimulatedCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client reads the invoice (no payment), then a payment lands there (another push,
    or Xero's user) before its edit: Xero's refusal is its rule, once, not a 4xx."""
    target, customer, invoice, sent = await invoice_at(env, xero, "xero")
    read = XeroClient._raw

    async def read_then_paid(self: XeroClient, entity_type: str, external_id: str) -> Any:
        raw = await read(self, entity_type, external_id)  # type: ignore[arg-type]
        if entity_type == "invoice" and not xero.sim.live("payment"):
            xero.sim.create(
                "payment",
                {"Invoice": {"InvoiceID": external_id}, "Account": {"Code": "090"}, "Amount": 50},
                notify=False,
            )
        return raw

    monkeypatch.setattr(XeroClient, "_raw", read_then_paid)
    edited_lines = [{"description": "Callout, after hours", "quantity": "1", "unit_amount": 15000}]
    edited = {**INVOICE, "customer_id": str(customer), "lines": edited_lines}
    await env.push(target, "invoice", invoice, await env.edit("invoice", invoice, edited))
    for _ in range(MAX_ATTEMPTS + 1):
        await env.run_due()
    assert xero.sim.get("invoice", sent["InvoiceID"])["LineItems"][0]["Description"] == "Callout"
    assert await env.queued() == []
    [dead] = await env.dead()
    assert dead["reason"] == "provider_rule", dead["detail"]
    assert "payment or credit note allocated" in dead["detail"]


async def test_an_approved_xero_invoice_takes_edits_but_not_a_return_to_draft(
    env: Env, xero: SimulatedCrm
) -> None:
    target, customer, invoice, sent = await invoice_at(env, xero, "xero")
    # Back to draft with a new due date: the due date goes, the status cannot.
    back = {**INVOICE, "customer_id": str(customer), "status": "draft", "due_on": "2026-12-31"}
    await env.push(target, "invoice", invoice, await env.edit("invoice", invoice, back))
    await env.run_due()
    now = xero.sim.get("invoice", sent["InvoiceID"])
    assert (now["Status"], now["DueDateString"][:10]) == ("AUTHORISED", "2026-12-31")
    [dead] = await env.dead()
    assert dead["reason"] == "provider_rule"
    assert "cannot return to draft" in dead["detail"]
    assert await env.queued() == []
    # What Xero took is linked, but the version is not counted as pushed.
    link = await env.pool.fetchrow(
        "SELECT last_pushed_version FROM entity_links WHERE entity_id = $1", invoice
    )
    assert link["last_pushed_version"] == 1


async def test_credentials_no_key_opens_park_the_push_instead_of_failing_it_for_ever(
    env: Env, xero: SimulatedCrm
) -> None:
    lost = KeyRing.parse("gone:" + base64.b64encode(b"k" * 32).decode())
    async with env.pool.acquire() as conn:
        target = await create_connection(
            conn,
            lost,
            tenant=env.tenant,
            provider="ascora",
            name="ascora",
            webhook_secret=None,
            base_url=xero.base_url,
            api_credentials=credentials_json(token="sim-token"),
            settings={"company_code": "ACME"},
        )
    customer = await env.record("customer", CUSTOMER)
    await env.push(target.id, "customer", customer)
    await env.run_due()
    assert await env.queued() == []
    [dead] = await env.dead()
    assert dead["reason"] == "credentials_unreadable"
    assert "CRMSYNC_MASTER_KEYS" in dead["detail"]


@pytest.fixture
async def stripe() -> AsyncIterator[SimulatedCrm]:
    async with simulated("stripe") as crm:
        yield crm


@pytest.mark.parametrize("status", [400, 503])
async def test_an_invoice_created_before_a_later_step_failed_is_linked_not_created_again(
    env: Env, stripe: SimulatedCrm, status: int
) -> None:
    target = await env.connect(stripe, "stripe")
    customer = await env.record("customer", CUSTOMER)
    invoice = await env.record("invoice", {**INVOICE, "customer_id": str(customer)})
    await env.push(target, "customer", customer)
    await env.run_due()
    # Stripe creates the invoice and its items, then refuses (or fails) the finalize.
    stripe.sim.faults.append(Fault(status, 1, path="/finalize"))
    await env.push(target, "invoice", invoice)
    await env.run_due()
    [created] = stripe.sim.live("invoice")
    assert created["status"] == "draft"
    link = await env.pool.fetchrow(
        "SELECT external_id, last_pushed_version FROM entity_links WHERE entity_id = $1",
        invoice,
    )
    assert link is not None, "the invoice Stripe created was not linked"
    assert (link["external_id"], link["last_pushed_version"]) == (created["id"], None)
    if status == 400:
        [dead] = await env.dead()
        assert dead["reason"] == "provider_4xx"
        await env.push(target, "invoice", invoice)  # the operator's redrive
    await env.run_due()
    [done] = stripe.sim.live("invoice")
    assert (done["id"], done["status"]) == (created["id"], "open")
    creates = [r for r in stripe.sim.log.requests if r["path"] == "/v1/invoices"]
    assert len(creates) == 1
    assert await env.queued() == []


class EchoMadeItsOwn(Pusher):
    """Before the push links what its failed create wrote, the echo of that create has
    made a record of its own, linked to it (changed at Stripe before its webhook left, so
    no longer recognised as our write): as the processor would have linked it."""

    tenant_id: uuid.UUID
    holder: uuid.UUID

    async def _link_written(self, *args: Any, **kwargs: Any) -> None:
        info, job, written = args[0], args[1], args[3]
        await self.pool.execute(
            "INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,"
            " external_id) VALUES ($1, $2, $3, $4, $5)",
            self.tenant_id,
            info.id,
            job.entity_type,
            self.holder,
            str(written),
        )
        await super()._link_written(*args, **kwargs)


@pytest.mark.parametrize("status", [400, 503])
async def test_a_failed_create_whose_write_another_record_holds_is_parked_once(
    env: Env, stripe: SimulatedCrm, status: int
) -> None:
    """Linking what a failed create wrote (Stripe's invoice, then its finalize refused or
    failed) broke entity_links' key on Stripe's id: the push failed "unexpectedly" on
    every lease, for ever, each run writing again. Like the create path's, one link_taken
    dead letter naming both records and the failure that followed the write."""
    target = await env.connect(stripe, "stripe")
    customer = await env.record("customer", CUSTOMER)
    invoice = await env.record("invoice", {**INVOICE, "customer_id": str(customer)})
    await env.push(target, "customer", customer)
    await env.run_due()
    pusher = EchoMadeItsOwn(env.pool, env.clients, env.pusher.policy)
    pusher.tenant_id = env.tenant_id
    pusher.holder = await env.record("invoice", {**INVOICE, "customer_id": str(customer)})
    stripe.sim.faults.append(Fault(status, 1, path="/finalize"))
    await env.push(target, "invoice", invoice)
    await env.pool.execute("UPDATE push_jobs SET next_attempt_at = now()")
    for job in (await claim(env.pool, 100, lease_seconds=0.5)).jobs:
        await pusher.run(job)
    [created] = stripe.sim.live("invoice")
    [dead] = await env.dead()
    assert dead["reason"] == "link_taken"
    assert str(invoice) in dead["detail"]
    assert str(pusher.holder) in dead["detail"]
    assert created["id"] in dead["detail"]
    assert "/finalize" in dead["detail"]
    assert await env.queued() == [], "the push is still queued: retried for ever"


PAYMENT = {
    "amount": 5000,
    "currency": "NZD",
    "status": "succeeded",
    "paid_at": "2026-12-01T10:00:00Z",
    "reference": "CARD-1",
}


async def _sync_log(env: Env, entity_id: uuid.UUID) -> list[tuple[str, str | None]]:
    rows = await env.pool.fetch(
        "SELECT outcome, error FROM sync_log WHERE entity_id = $1 AND direction = 'out'"
        " ORDER BY id",
        entity_id,
    )
    return [(r["outcome"], r["error"]) for r in rows]


async def test_a_payment_edit_xero_cannot_take_is_not_sent_and_is_logged_once(
    env: Env, xero: SimulatedCrm
) -> None:
    # Xero's payments take no edit (capabilities: update ✗): the edit is not sent, not a
    # dead letter for ever redriven, but logged once with the rule.
    target, _customer, invoice, _sent = await invoice_at(env, xero, "xero")
    payment = await env.record("payment", {**PAYMENT, "invoice_id": str(invoice)})
    await env.push(target, "payment", payment)
    await env.run_due()
    [paid] = xero.sim.live("payment")
    assert paid["Reference"] == "CARD-1"
    edited = {**PAYMENT, "invoice_id": str(invoice), "reference": "CARD-1 refund note"}
    version = await env.edit("payment", payment, edited)
    await env.push(target, "payment", payment, version)
    before = len(xero.sim.log.requests)
    await env.run_due()
    assert list(xero.sim.log.requests)[before:] == []
    assert await env.queued() == []
    assert await env.dead() == []
    [_created, (outcome, error)] = await _sync_log(env, payment)
    assert outcome == "not_updatable"
    assert "Xero payments cannot be edited" in (error or "")
    link = await env.pool.fetchrow(
        "SELECT last_pushed_version FROM entity_links WHERE entity_id = $1", payment
    )
    assert link["last_pushed_version"] == version


async def push_pending_payment(env: Env, target: uuid.UUID, invoice: uuid.UUID) -> uuid.UUID:
    """A card payment of ``invoice`` not settled yet (no ``paid_at``), pushed to ``target``."""
    pending = {**PAYMENT, "invoice_id": str(invoice), "status": "pending"}
    del pending["paid_at"]
    payment = await env.record("payment", pending)
    await env.push(target, "payment", payment)
    return payment


async def settle_and_push(
    env: Env, target: uuid.UUID, invoice: uuid.UUID, payment: uuid.UUID
) -> None:
    """The pending payment has succeeded: its new version pushed to ``target`` and run."""
    version = await env.edit(
        "payment", payment, {**PAYMENT, "invoice_id": str(invoice), "status": "succeeded"}
    )
    await env.push(target, "payment", payment, version)
    await env.run_due()


async def test_a_pending_payment_waits_for_xero_until_it_succeeds(
    env: Env, xero: SimulatedCrm
) -> None:
    # Xero records money received only (its Payments API has no pending payment): a
    # pending card payment is held, not refused, and goes once it has succeeded.
    target, _customer, invoice, sent = await invoice_at(env, xero, "xero")
    payment = await push_pending_payment(env, target, invoice)
    before = len(xero.sim.log.requests)
    await env.run_due()
    assert list(xero.sim.log.requests)[before:] == []
    assert await env.dead() == []
    assert await env.queued() == []
    [(outcome, error)] = await _sync_log(env, payment)
    assert outcome == "held"
    assert "pending" in (error or "")
    await settle_and_push(env, target, invoice, payment)
    [paid] = xero.sim.live("payment")
    assert paid["Invoice"]["InvoiceID"] == sent["InvoiceID"]
    assert await env.dead() == []


@pytest.fixture
async def ascora() -> AsyncIterator[SimulatedCrm]:
    async with simulated("ascora") as crm:
        yield crm


@pytest.mark.parametrize(
    ("provider", "status", "refusal"),
    [
        ("xero", ("Status", "DRAFT"), "Payments can only be made against Authorised documents"),
        ("ascora", ("status", "Draft"), "takes no payments"),
    ],
)
async def test_a_payment_on_a_draft_invoice_is_refused_by_rule_not_as_a_4xx(
    env: Env, provider: str, status: tuple[str, str], refusal: str
) -> None:
    async with simulated(provider) as crm:
        target, _customer, invoice, sent = await invoice_at(env, crm, provider, status="draft")
        field, draft = status
        assert sent[field] == draft
        payment = await env.record("payment", {**PAYMENT, "invoice_id": str(invoice)})
        await env.push(target, "payment", payment)
        for _ in range(MAX_ATTEMPTS + 1):
            await env.run_due()
        assert crm.sim.live("payment") == []
        assert await env.queued() == []
        [dead] = await env.dead()
        assert dead["reason"] == "provider_rule"
        assert refusal in dead["detail"]


async def test_an_invoice_without_lines_waits_for_xero_until_it_has_them(
    env: Env, xero: SimulatedCrm
) -> None:
    # Xero approves no invoice without a line item ("An invoice must have at least one
    # line item"): held, not a 4xx dead letter, and created once it has its lines.
    target = await env.connect(xero, "xero")
    customer = await env.record("customer", CUSTOMER)
    empty = {**INVOICE, "lines": [], "subtotal": 0, "total": 0, "customer_id": str(customer)}
    invoice = await env.record("invoice", empty)
    await env.push(target, "customer", customer)
    await env.push(target, "invoice", invoice)
    await env.run_due()
    await env.run_due()
    assert xero.sim.live("invoice") == []
    assert await env.dead() == []
    assert await env.queued() == []
    [(outcome, error)] = await _sync_log(env, invoice)
    assert outcome == "held"
    assert "line" in (error or "")
    version = await env.edit("invoice", invoice, {**INVOICE, "customer_id": str(customer)})
    await env.push(target, "invoice", invoice, version)
    await env.run_due()
    [sent] = xero.sim.live("invoice")
    assert sent["Status"] == "AUTHORISED"
    assert await env.dead() == []


async def test_deleting_a_paid_xero_invoice_is_refused_by_rule_once(
    env: Env, xero: SimulatedCrm
) -> None:
    # Xero voids no invoice with payments allocated ("remove its payments first"): a
    # rule of Xero's about the invoice as it stands, parked once as provider_rule.
    target, _customer, invoice, sent = await invoice_at(env, xero, "xero")
    payment = await env.record("payment", {**PAYMENT, "invoice_id": str(invoice), "amount": 15000})
    await env.push(target, "payment", payment)
    await env.run_due()
    assert xero.sim.get("invoice", sent["InvoiceID"])["Status"] == "PAID"
    version: int = await env.pool.fetchval(
        "UPDATE invoices SET deleted_at = now(), version = version + 1 WHERE id = $1"
        " RETURNING version",
        invoice,
    )
    await env.push(target, "invoice", invoice, version)
    for _ in range(MAX_ATTEMPTS + 1):
        await env.run_due()
    assert xero.sim.get("invoice", sent["InvoiceID"])["Status"] == "PAID"
    assert await env.queued() == []
    [dead] = await env.dead()
    assert dead["reason"] == "provider_rule"
    assert "remove its payments first" in dead["detail"]


async def test_a_pending_payment_waits_for_ascora_which_never_edits_one(
    env: Env, ascora: SimulatedCrm
) -> None:
    # Ascora records pending payments but never edits a payment: pushed now, a card
    # payment would stay pending there after it succeeded. It waits until it has settled.
    target, _customer, invoice, _sent = await invoice_at(env, ascora, "ascora")
    payment = await push_pending_payment(env, target, invoice)
    await env.run_due()
    assert ascora.sim.live("payment") == []
    assert await env.dead() == []
    [(outcome, _error)] = await _sync_log(env, payment)
    assert outcome == "held"
    await settle_and_push(env, target, invoice, payment)
    [paid] = ascora.sim.live("payment")
    assert paid["status"] == "Completed"
    assert await env.dead() == []
