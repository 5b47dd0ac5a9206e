"""Shopify through the whole pipeline: its simulator's signed webhooks (topic, webhook id
and trigger time in headers) into ingest, the processor's canonical rows, outbound's
pushes to Square and back, with no dead letter; and a backfill of a store's records that
existed before the connection, paged by the Link header."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.sync_harness import (
    Crm,
    SimulatedCrm,
    Stack,
    Sync,
    paid_at_square,
    square_invoice_body,
    until,
)
from tests.ingest_harness import PUBLIC_BASE

Crms = tuple[Stack, SimulatedCrm, SimulatedCrm]


@pytest.fixture
async def crms(sync: Sync) -> AsyncIterator[Crms]:
    async with sync(Crm("shopify"), Crm("square")) as (stack, (shopify, square)):
        # Square signs the URL its subscription names: ingest's public one.
        square.sim.notification_url = f"{PUBLIC_BASE}/webhooks/square/{square.connection_id}"  # type: ignore[attr-defined]
        yield stack, shopify, square


async def test_a_shopify_customer_order_and_transaction_reach_square_and_back(
    crms: Crms,
) -> None:
    stack, shopify, square = crms
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
    await paid_at_square(stack, square, 27_500, "EFT 42")
    await until(lambda: square.sim.live("invoice")[0]["status"] == "PAID")
    assert await stack.wait("SELECT count(*) FROM invoices WHERE data->>'status' = 'paid'", 1) == 1

    # And back: an edit in Square reaches the Shopify customer, and an invoice paid in
    # Square becomes a Shopify order with its transaction.
    square.sim.update("customer", square_customer["id"], {"phone_number": "+61255501234"})
    await until(lambda: shopify.sim.get("customer", str(customer["id"])).get("phone"))
    assert shopify.sim.get("customer", str(customer["id"]))["phone"] == "+61255501234"
    square_invoice = square.sim.create(
        "invoice", square_invoice_body("SQ-2", square_customer["id"], "Tap washer", "2", 4_000)
    )
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

    await stack.quiet_after_echoes(customers=1, invoices=2, payments=2)
    assert len(shopify.sim.live("invoice")) == 2
    assert len(square.sim.live("invoice")) == 2
    assert len(shopify.sim.live("payment")) == 2


async def test_a_backfill_brings_in_what_the_store_held_before_the_connection(
    crms: Crms,
) -> None:
    stack, shopify, _ = crms
    await stack.backfill_brings_in_what_was_seeded(shopify)
