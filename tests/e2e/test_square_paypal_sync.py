"""Square and PayPal through the whole pipeline: their simulators' signed webhooks into
ingest (PayPal's verified with the certificate the simulator serves, fetched by ingest),
the processor's canonical rows in Postgres, outbound's pushes to the other one, and a
backfill of records that existed before the connection."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from connectors.paypal.mapping import money
from crmsync.application.sync import jobs
from tests.e2e.sync_harness import (
    Crm,
    SimulatedCrm,
    Stack,
    paid_at_square,
    post_changes,
    square_invoice_body,
    until,
)

Crms = tuple[Stack, SimulatedCrm, SimulatedCrm]


CRMS = (Crm("square"), Crm("paypal"))


async def test_square_records_reach_paypal_and_a_paypal_payment_reaches_square(crms: Crms) -> None:
    stack, square, paypal = crms
    customer = square.sim.create(
        "customer", {"given_name": "Harbour Plumbing", "email_address": "office@harbour.example"}
    )
    assert await stack.wait("SELECT count(*) FROM customers", 1) == 1
    square.sim.create(
        "invoice", square_invoice_body("SQ-1", customer["id"], "Blocked drain", "1", 27_500)
    )
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
    payment = await paid_at_square(stack, square, 27_500, "EFT 42")
    [square_invoice] = square.sim.live("invoice")
    await until(lambda: square.sim.live("invoice")[0]["status"] == "PAID")
    assert payment["order_id"] == square_invoice["order_id"]
    await asyncio.sleep(2)  # echoes of both pushes come back and must change nothing
    assert await stack.dead_letters() == []
    assert await stack.count("SELECT count(*) FROM invoices") == 1
    assert await stack.count("SELECT count(*) FROM payments") == 1


async def test_a_backfill_brings_in_what_square_held_before_the_connection(crms: Crms) -> None:
    stack, square, _ = crms
    await stack.backfill_brings_in_what_was_seeded(square)


async def test_paypals_draft_creation_event_does_not_revert_an_invoice_open_elsewhere(
    crms: Crms,
) -> None:
    """PayPal creates an invoice as a DRAFT and sends it in a second call; the creation's
    event carries the draft, newer than the open invoice it was made from. Applied, it
    turned the invoice back to a draft everywhere (the demo's Ascora then refused its
    payment): PayPal's invoice events are hydrated to the invoice as it is now."""
    stack, _, paypal = crms
    internal = await stack.add_connection("internal", "billing")
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
    assert internal.api_key is not None
    await post_changes(stack.ingest_url, internal.api_key, changes)
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
    assert await stack.wait(heard, 2, paypal.connection_id) == 2
    await asyncio.sleep(1)  # what an applied event would push, pushed
    applied = await stack.pool.fetch(
        """
        SELECT outcome, external_id FROM sync_log
         WHERE tenant_id = (SELECT tenant_id FROM connections WHERE id = $1)
           AND entity_type = 'invoice' AND outcome = 'applied'
        """,
        paypal.connection_id,
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
    stack, square, paypal = crms
    square.sim.create(
        "customer", {"given_name": "Cedar Carpentry", "email_address": "build@cedar.example"}
    )
    linked = """
        SELECT count(*) FROM entity_links WHERE connection_id = $1 AND entity_type = 'customer'
    """
    # Pushed to PayPal (a write that calls nothing: the e-mail is what invoices address).
    assert await stack.wait(linked, 1, paypal.connection_id) == 1
    tenant_id = await stack.pool.fetchval(
        "SELECT tenant_id FROM connections WHERE id = $1", paypal.connection_id
    )
    job_id, queued = await jobs.queue(
        stack.pool,
        tenant_id=tenant_id,
        connection_id=paypal.connection_id,
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
