"""Square and PayPal through the whole pipeline: their simulators' signed webhooks into
ingest (PayPal's verified with the certificate the simulator serves, fetched by ingest),
the processor's canonical rows in Postgres, outbound's pushes to the other one, and a
backfill of records that existed before the connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.paypal.mapping import money
from crmsync.application.sync import jobs
from tests.e2e.sync_harness import SimulatedCrm, Stack, running_stack, start_simulator
from tests.ingest_harness import PUBLIC_BASE


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
            # Square signs the URL its subscription names: ingest's public one.
            square.sim.notification_url = f"{PUBLIC_BASE}/webhooks/square/{square_id}"  # type: ignore[attr-defined]
            yield Crms(stack, square, paypal, square_id, paypal_id)
    finally:
        for crm in (square, paypal):
            await crm.runner.cleanup()


async def until(check: Callable[[], object], seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


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
    await until(lambda: paypal.sim.live("invoice"))
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
    dead = await stack.pool.fetch("SELECT reason, detail FROM dead_letters")
    assert [dict(d) for d in dead] == []
    assert await stack.count("SELECT count(*) FROM invoices") == 1
    assert await stack.count("SELECT count(*) FROM payments") == 1


async def test_a_backfill_brings_in_what_square_held_before_the_connection(crms: Crms) -> None:
    stack, square = crms.stack, crms.square
    square.sim.seed(5)  # existed before: no webhooks
    tenant_id = await stack.pool.fetchval(
        "SELECT tenant_id FROM connections WHERE id = $1", crms.square_id
    )
    _job, queued = await jobs.queue(
        stack.pool,
        tenant_id=tenant_id,
        connection_id=crms.square_id,
        kind="backfill",
        entity_types=["customer", "invoice", "payment"],
        modified_since=None,
        requested_by="test",
    )
    assert queued
    assert await stack.wait("SELECT count(*) FROM customers", 5, seconds=60) == 5
    assert await stack.wait("SELECT count(*) FROM invoices", 5, seconds=60) == 5
    assert await stack.wait("SELECT count(*) FROM payments", 5, seconds=60) == 5
    dead = await stack.pool.fetch("SELECT reason, detail FROM dead_letters")
    assert [dict(d) for d in dead] == []
