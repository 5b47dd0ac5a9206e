"""Square and PayPal through the whole pipeline: their simulators' signed webhooks into
ingest (PayPal's verified with the certificate the simulator serves, fetched by ingest),
the processor's canonical rows in Postgres, outbound's pushes to the other one, and a
backfill of records that existed before the connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from connectors.paypal.mapping import money
from crmsync.application.sync import jobs
from crmsync.common.connections import create_connection
from tests.e2e.sync_harness import SimulatedCrm, Stack, running_stack, start_simulator, until


@dataclass
class Crms:
    stack: Stack
    square: SimulatedCrm
    paypal: SimulatedCrm
    square_id: uuid.UUID
    paypal_id: uuid.UUID


@pytest.fixture
async def crms(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Crms]:
    square = await start_simulator("square")
    paypal = await start_simulator("paypal")
    try:
        async with running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack:
            square_id = await stack.connect(square, "square")
            paypal_id = await stack.connect(paypal, "paypal")
            yield Crms(stack, square, paypal, square_id, paypal_id)
    finally:
        for crm in (square, paypal):
            await crm.runner.cleanup()


async def test_square_records_reach_paypal_and_a_paypal_payment_reaches_square(crms: Crms) -> None:
    stack, square, paypal = crms.stack, crms.square, crms.paypal
    customer = square.sim.create(
        "customer", {"given_name": "Harbour Plumbing", "email_address": "office@harbour.example"}
    )
    assert await stack.wait("SELECT count(*) FROM customers", 1) == 1
    square.sim.create(
        "invoice",
        {
            "invoice": {
                "invoice_number": "SQ-1",
                "sale_or_service_date": "2026-12-01",
                "primary_recipient": {"customer_id": customer["id"]},
                "payment_requests": [{"request_type": "BALANCE", "due_date": "2026-12-31"}],
            },
            "order": {
                "line_items": [
                    {"name": "Blocked drain", "quantity": "1",
                     "base_price_money": {"amount": 27_500, "currency": "AUD"}}
                ]
            },
            "publish": True,
        },
    )  # fmt: skip
    assert await stack.wait("SELECT count(*) FROM invoices", 1) == 1
    # PayPal makes an invoice a draft and sends it in a second call (the client reads it
    # between): under load the draft can be seen first, so wait for the one sent.
    await until(
        lambda: [i for i in paypal.sim.live("invoice") if i["status"] != "DRAFT"],
        "PayPal's invoice sent",
    )
    [invoice] = paypal.sim.live("invoice")
    assert invoice["status"] == "UNPAID"
    assert invoice["detail"]["invoice_number"] == "SQ-1"
    billing = invoice["primary_recipients"][0]["billing_info"]
    assert billing["email_address"] == "office@harbour.example"
    assert invoice["amount"]["value"] == "275.00"

    # The customer pays in PayPal: the invoice's event (verified with PayPal's certificate)
    # brings the payment, which Square records against the invoice's order.
    paypal.sim.create(
        "payment",
        {"invoice_id": invoice["id"], "method": "BANK_TRANSFER",
         "amount": money(27_500, "AUD"), "payment_date": "2026-12-02", "note": "EFT 42"},
    )  # fmt: skip
    assert await stack.wait("SELECT count(*) FROM payments", 1) == 1
    await until(lambda: square.sim.live("payment"))
    [payment] = square.sim.live("payment")
    assert payment["amount_money"] == {"amount": 27_500, "currency": "AUD"}
    assert payment["reference_id"] == "EFT 42"
    [square_invoice] = square.sim.live("invoice")
    await until(lambda: square.sim.live("invoice")[0]["status"] == "PAID")
    assert payment["order_id"] == square_invoice["order_id"]
    await asyncio.sleep(2)  # echoes of both pushes come back and must change nothing
    assert await stack.dead_letters() == []
    assert await stack.count("SELECT count(*) FROM invoices") == 1
    assert await stack.count("SELECT count(*) FROM payments") == 1


async def test_a_backfill_brings_in_what_square_held_before_the_connection(crms: Crms) -> None:
    await crms.stack.backfill_brings_in_what_was_seeded(crms.square, crms.square_id)


async def test_paypals_draft_creation_event_does_not_revert_an_invoice_open_elsewhere(
    crms: Crms,
) -> None:
    """PayPal creates an invoice as a DRAFT and sends it in a second call; the creation's
    event carries the draft, newer than the open invoice it was made from. Applied, it
    turned the invoice back to a draft everywhere (the demo's Ascora then refused its
    payment): PayPal's invoice events are hydrated to the invoice as it is now."""
    stack, paypal = crms.stack, crms.paypal
    async with stack.pool.acquire() as conn:
        internal = await create_connection(
            conn,
            stack.keyring,
            tenant=stack.tenant,
            provider="internal",
            name="billing",
            webhook_secret=None,
        )
    # Opened by the business's own billing service a minute before it reaches PayPal.
    opened = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    changes = [
        {"event_id": "cus-1", "entity_type": "customer", "op": "upsert", "external_id": "c-1",
         "occurred_at": opened,
         "data": {"name": "Ridge Electrical", "email": "jobs@ridge.example"}},
        {"event_id": "inv-1", "entity_type": "invoice", "op": "upsert", "external_id": "i-1",
         "occurred_at": opened, "refs": {"customer_id": "c-1"},
         "data": {"number": "B-7", "status": "open", "currency": "AUD",
                  "issued_on": "2026-12-01", "due_on": "2026-12-31",
                  "lines": [{"description": "Switchboard", "quantity": "1",
                             "unit_amount": 48_000, "tax_amount": 0}],
                  "subtotal": 48_000, "tax": 0, "total": 48_000, "amount_due": 48_000}},
    ]  # fmt: skip
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{stack.ingest_url}/v1/changes",
            json=changes,
            headers={"Authorization": f"Bearer {internal.api_key}"},
        ) as response,
    ):
        assert response.status == 202, await response.text()
    await until(lambda: paypal.sim.live("invoice"))
    [invoice] = paypal.sim.live("invoice")
    await until(lambda: paypal.sim.webhooks_pending == 0)
    # Its creation's event went out first, carrying the draft.
    assert paypal.sim.log.webhooks[0]["changes"] == [("invoice", invoice["id"], "create")]
    await until(lambda: len(paypal.sim.log.webhooks) >= 2)

    # Both of PayPal's events (the creation's draft, then the sent invoice) were heard.
    heard = """
        SELECT count(*) FROM sync_log
         WHERE connection_id = $1 AND direction = 'in' AND entity_type = 'invoice'
    """
    assert await stack.wait(heard, 2, crms.paypal_id) == 2
    await asyncio.sleep(1)  # what an applied event would push, pushed
    applied = await stack.pool.fetch(
        """
        SELECT outcome, external_id FROM sync_log
         WHERE tenant_id = (SELECT tenant_id FROM connections WHERE id = $1)
           AND entity_type = 'invoice' AND outcome = 'applied'
        """,
        crms.paypal_id,
    )
    assert len(applied) == 1, f"the invoice changed after it was opened: {applied}"
    assert await stack.pool.fetchval("SELECT data->>'status' FROM invoices") == "open"
    assert await stack.dead_letters() == []


async def test_a_full_reconciliation_of_paypal_deletes_no_customer_its_invoices_do_not_name(
    crms: Crms,
) -> None:
    """PayPal lists customers only as its invoices' recipients: a customer pushed to it that
    no invoice there addresses yet is not listed, and is not gone. The convergence run found
    PayPal's full reconciliation deleting such customers in every system (issue 21)."""
    stack, square = crms.stack, crms.square
    square.sim.create(
        "customer", {"given_name": "Cedar Carpentry", "email_address": "build@cedar.example"}
    )
    linked = """
        SELECT count(*) FROM entity_links WHERE connection_id = $1 AND entity_type = 'customer'
    """
    # Pushed to PayPal (a write that calls nothing: the e-mail is what invoices address).
    assert await stack.wait(linked, 1, crms.paypal_id) == 1
    tenant_id = await stack.pool.fetchval(
        "SELECT tenant_id FROM connections WHERE id = $1", crms.paypal_id
    )
    job_id, queued = await jobs.queue(
        stack.pool,
        tenant_id=tenant_id,
        connection_id=crms.paypal_id,
        kind="full_reconcile",
        entity_types=["customer", "invoice", "payment"],
        modified_since=None,
        requested_by="test",
    )
    assert queued
    done = "SELECT count(*) FROM sync_jobs WHERE id = $1 AND status = 'succeeded'"
    assert await stack.wait(done, 1, job_id, seconds=60) == 1
    assert (
        await stack.pool.fetchval("SELECT records_deleted FROM sync_jobs WHERE id = $1", job_id)
        == 0
    )
    await asyncio.sleep(2)  # a delete it sent would be applied and pushed by now
    assert await stack.count("SELECT count(*) FROM customers WHERE deleted_at IS NULL") == 1
    assert square.sim.live("customer"), "the customer was deleted in Square"
    assert await stack.dead_letters() == []
