"""Shopify through the whole pipeline: its simulator's signed webhooks (topic, webhook id
and trigger time in headers) into ingest, the processor's canonical rows, outbound's
pushes to Square and back, with no dead letter; and a backfill of a store's records that
existed before the connection, paged by the Link header."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.sync_harness import SimulatedCrm, Stack, running_stack, start_simulator, until
from tests.ingest_harness import PUBLIC_BASE


@dataclass
class Crms:
    stack: Stack
    shopify: SimulatedCrm
    square: SimulatedCrm
    shopify_id: uuid.UUID
    square_id: uuid.UUID


@pytest.fixture
async def crms(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Crms]:
    shopify = await start_simulator("shopify")
    square = await start_simulator("square")
    try:
        async with running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack:
            shopify_id = await stack.connect(shopify, "shopify")
            square_id = await stack.connect(square, "square")
            # Square signs the URL its subscription names: ingest's public one.
            square.sim.notification_url = f"{PUBLIC_BASE}/webhooks/square/{square_id}"  # type: ignore[attr-defined]
            yield Crms(stack, shopify, square, shopify_id, square_id)
    finally:
        for crm in (shopify, square):
            await crm.runner.cleanup()


async def test_a_shopify_customer_order_and_transaction_reach_square_and_back(
    crms: Crms,
) -> None:
    stack, shopify, square = crms.stack, crms.shopify, crms.square
    customer = shopify.sim.create(
        "customer",
        {"first_name": "Harbour", "last_name": "Plumbing", "email": "office@harbour.example"},
    )
    assert await stack.wait("SELECT count(*) FROM customers", 1) == 1
    order = shopify.sim.create(
        "invoice",
        {
            "order": {
                "customer": {"id": customer["id"]},
                "currency": "AUD",
                "line_items": [
                    {"title": "Blocked drain", "quantity": 1, "price": "250.00",
                     "tax_lines": [{"title": "GST", "price": "25.00", "rate": 0.1}]}
                ],
            }
        },
    )  # fmt: skip
    assert await stack.wait("SELECT count(*) FROM invoices", 1) == 1
    await until(lambda: square.sim.live("invoice"))
    [invoice] = square.sim.live("invoice")
    assert invoice["invoice_number"] == order["name"]
    square_order = square.sim.orders[invoice["order_id"]]  # type: ignore[attr-defined]
    assert square_order["total_money"] == {"amount": 27_500, "currency": "AUD"}
    assert square_order["total_tax_money"] == {"amount": 2_500, "currency": "AUD"}
    [square_customer] = square.sim.live("customer")
    assert square_customer["email_address"] == "office@harbour.example"

    # The customer pays in Shopify: the transaction reaches Square as a payment of the
    # invoice's order, which settles it there too.
    shopify.sim.create(
        "payment",
        {"order_id": order["id"],
         "transaction": {"kind": "sale", "amount": "275.00", "gateway": "bank_transfer",
                         "authorization": "EFT 42"}},
    )  # fmt: skip
    assert await stack.wait("SELECT count(*) FROM payments", 1) == 1
    await until(lambda: square.sim.live("payment"))
    [payment] = square.sim.live("payment")
    assert payment["amount_money"] == {"amount": 27_500, "currency": "AUD"}
    assert payment["reference_id"] == "EFT 42"
    await until(lambda: square.sim.live("invoice")[0]["status"] == "PAID")
    assert await stack.wait("SELECT count(*) FROM invoices WHERE data->>'status' = 'paid'", 1) == 1

    # And back: an edit in Square reaches the Shopify customer, and an invoice paid in
    # Square becomes a Shopify order with its transaction.
    square.sim.update("customer", square_customer["id"], {"phone_number": "+61255501234"})
    await until(lambda: shopify.sim.get("customer", str(customer["id"])).get("phone"))
    assert shopify.sim.get("customer", str(customer["id"]))["phone"] == "+61255501234"
    square_invoice = square.sim.create(
        "invoice",
        {
            "invoice": {
                "invoice_number": "SQ-2",
                "sale_or_service_date": "2026-12-01",
                "primary_recipient": {"customer_id": square_customer["id"]},
                "payment_requests": [{"request_type": "BALANCE", "due_date": "2026-12-31"}],
            },
            "order": {
                "line_items": [
                    {"name": "Tap washer", "quantity": "2",
                     "base_price_money": {"amount": 4_000, "currency": "AUD"}}
                ]
            },
            "publish": True,
        },
    )  # fmt: skip
    await until(lambda: len(shopify.sim.live("invoice")) == 2)
    made = next(o for o in shopify.sim.live("invoice") if o["name"] == "SQ-2")
    assert (made["total_price"], made["financial_status"]) == ("80.00", "pending")
    assert made["customer"]["id"] == customer["id"]
    assert made["payment_terms"]["payment_schedules"][0]["due_at"].startswith("2026-12-31")
    square.sim.create(
        "payment",
        {"invoice_id": square_invoice["id"],
         "amount_money": {"amount": 8_000, "currency": "AUD"}, "reference_id": "CASH-7"},
    )  # fmt: skip
    await until(lambda: shopify.sim.get("invoice", str(made["id"]))["financial_status"] == "paid")
    [transaction] = [t for t in shopify.sim.live("payment") if t["order_id"] == made["id"]]
    assert (transaction["amount"], transaction["authorization"]) == ("80.00", "CASH-7")

    await asyncio.sleep(3)  # echoes of every push come back and must change nothing
    assert await stack.dead_letters() == []
    assert await stack.count("SELECT count(*) FROM customers") == 1
    assert await stack.count("SELECT count(*) FROM invoices") == 2
    assert await stack.count("SELECT count(*) FROM payments") == 2
    assert len(shopify.sim.live("invoice")) == 2
    assert len(square.sim.live("invoice")) == 2
    assert len(shopify.sim.live("payment")) == 2


async def test_a_backfill_brings_in_what_the_store_held_before_the_connection(
    crms: Crms,
) -> None:
    await crms.stack.backfill_brings_in_what_was_seeded(crms.shopify, crms.shopify_id)
