"""Issue 17 item 6 against the real PostgreSQL: a payment recorded anywhere moves its
invoice's ``amount_due`` and ``status``, in the payment's transaction, as a new version of
the invoice with an outbox row, on both apply paths."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import pytest

from crmsync.common.connections import CreatedConnection, create_connection
from services.processor import pipeline
from services.processor.deadletters import Source
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from tests.integration.test_references import KEYRING, T0, TOPIC, at, change, processor

__all__ = ["processor"]  # the fixture, imported for pytest


async def connect(pool: asyncpg.Pool, name: str) -> CreatedConnection:
    async with pool.acquire() as conn:
        return await create_connection(
            conn, KEYRING, tenant="acme", provider="internal", name=name,
            webhook_secret=None, settings={},
        )  # fmt: skip


@pytest.fixture
async def xero(pool: asyncpg.Pool) -> CreatedConnection:
    return await connect(pool, "xero")


@pytest.fixture
async def stripe(pool: asyncpg.Pool) -> CreatedConnection:
    return await connect(pool, "stripe")


def invoice(
    conn: CreatedConnection, *, ts: datetime = T0, external_id: str = "in_1", **fields: Any
) -> Source:
    data = {"number": "INV-1", "currency": "AUD", "total": 1100, "status": "open", **fields}
    return change(conn, "invoice", external_id, data, ts=ts)


def payment(
    conn: CreatedConnection,
    external_id: str,
    *,
    ts: datetime,
    amount: int = 1100,
    status: str = "succeeded",
    currency: str = "AUD",
    invoice_id: str = "in_1",
) -> Source:
    return change(
        conn,
        "payment",
        external_id,
        {"amount": amount, "currency": currency, "status": status},
        ts=ts,
        refs={"invoice_id": invoice_id},
    )


async def the_invoice(pool: asyncpg.Pool) -> asyncpg.Record:
    row: asyncpg.Record = await pool.fetchrow("SELECT id, data, version, field_meta FROM invoices")
    return row


async def invoice_changes(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """The invoice's outbox rows, oldest first: (version, origin, state)."""
    return await pool.fetch(
        """
        SELECT version, origin_connection_id AS origin, payload -> 'state' AS state
          FROM outbox WHERE entity_type = 'invoice' ORDER BY version
        """
    )


def outcomes(results: list[Any]) -> list[Outcome | None]:
    return [r.outcome if r is not None else None for r in results]


async def test_a_full_payment_makes_its_invoice_paid_in_a_new_version_with_an_outbox_row(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    await processor.handle(TOPIC, [invoice(stripe)])
    results = await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(1))])
    assert outcomes(results) == [Outcome.APPLIED]

    row = await the_invoice(pool)
    assert row["data"]["amount_due"] == 0
    assert row["data"]["status"] == "paid"
    assert row["version"] == 2
    assert row["field_meta"]["amount_due"]["source"] == "derived"
    assert row["field_meta"]["status"]["source"] == "derived"
    _created, derived = await invoice_changes(pool)
    assert derived["version"] == 2
    assert (derived["state"]["amount_due"], derived["state"]["status"]) == (0, "paid")
    # Pushed to every system, the payment's own too: a Stripe PaymentIntent does not move
    # Stripe's invoice by itself (the demo's card payment left it open).
    assert derived["origin"] is None


async def test_a_part_payment_lowers_amount_due_and_leaves_the_invoice_open(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    await processor.handle(TOPIC, [invoice(stripe, amount_due=1100)])
    await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(1), amount=400)])

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["data"]["status"], row["version"]) == (700, "open", 2)
    assert [(c["version"], c["state"]["amount_due"]) for c in await invoice_changes(pool)] == [
        (1, 1100),
        (2, 700),
    ]


async def test_two_payments_in_one_batch_make_one_version_of_their_invoice(
    pool: asyncpg.Pool, stripe: CreatedConnection, xero: CreatedConnection, processor: Processor
) -> None:
    await processor.handle(TOPIC, [invoice(stripe), invoice(xero, external_id="X-1")])
    batch = [
        payment(stripe, "pi_1", ts=at(1), amount=600),
        payment(xero, "pay_1", ts=at(2), amount=500, invoice_id="X-1"),
        # Neither refunded nor in the invoice's currency: these pay nothing of it.
        payment(stripe, "pi_2", ts=at(3), amount=100, status="failed"),
        payment(stripe, "pi_3", ts=at(3), amount=100, currency="NZD"),
    ]
    assert outcomes(await processor.handle(TOPIC, batch)) == [Outcome.APPLIED] * 4

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["data"]["status"], row["version"]) == (0, "paid", 2)
    changes = await invoice_changes(pool)
    assert [c["version"] for c in changes] == [1, 2]
    # Payments from two systems: neither has seen the other's, so both are pushed to.
    assert changes[1]["origin"] is None
    assert row["field_meta"]["amount_due"]["ts"] == at(3).isoformat()


@pytest.mark.parametrize("how", ["deleted", "refunded"])
async def test_a_payment_deleted_or_refunded_gives_its_amount_back_and_reopens_the_invoice(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor, how: str
) -> None:
    await processor.handle(TOPIC, [invoice(stripe)])
    await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(1), amount=500)])
    await processor.handle(TOPIC, [payment(stripe, "pi_2", ts=at(2), amount=600)])
    assert (await the_invoice(pool))["data"]["status"] == "paid"

    if how == "deleted":
        undo = change(stripe, "payment", "pi_2", {}, ts=at(3), op="delete")
    else:
        undo = change(stripe, "payment", "pi_2", {"status": "refunded"}, ts=at(3))
    assert outcomes(await processor.handle(TOPIC, [undo])) == [Outcome.APPLIED]

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["data"]["status"], row["version"]) == (600, "open", 4)
    derived = (await invoice_changes(pool))[1:]
    assert [(c["state"]["amount_due"], c["state"]["status"]) for c in derived] == [
        (600, "open"),
        (0, "paid"),
        (600, "open"),
    ]


async def test_a_payment_changed_in_what_it_does_not_pay_leaves_the_invoice_alone(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    await processor.handle(TOPIC, [invoice(stripe)])
    await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(1), amount=500)])
    await processor.handle(TOPIC, [change(stripe, "payment", "pi_1", {"method": "card"}, ts=at(2))])
    assert (await the_invoice(pool))["version"] == 2


async def test_the_providers_own_amount_due_that_agrees_makes_no_extra_version(
    pool: asyncpg.Pool, xero: CreatedConnection, processor: Processor
) -> None:
    """Xero applies a payment to its invoice and reports both: the payment first, then the
    invoice with its own AmountDue, which agrees with the derived one."""
    await processor.handle(TOPIC, [invoice(xero, amount_due=1100)])
    await processor.handle(TOPIC, [payment(xero, "pay_1", ts=at(1), amount=400)])
    (reported,) = await processor.handle(TOPIC, [invoice(xero, ts=at(1), amount_due=700)])

    assert reported is not None
    assert reported.outcome == Outcome.NOOP
    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["version"]) == (700, 2)
    assert [c["version"] for c in await invoice_changes(pool)] == [1, 2]
    # Xero, which computes AmountDue itself, is pushed it too: its paid invoice takes no
    # edit (connectors/xero/lifecycle.py).
    assert (await invoice_changes(pool))[1]["origin"] is None


async def test_the_providers_own_amount_due_reported_first_needs_no_derived_version(
    pool: asyncpg.Pool, xero: CreatedConnection, processor: Processor
) -> None:
    """The same two reports the other way round: the derivation agrees with the figure
    Xero already reported, so the payment moves nothing."""
    await processor.handle(TOPIC, [invoice(xero, amount_due=1100)])
    await processor.handle(TOPIC, [invoice(xero, ts=at(1), amount_due=700)])
    await processor.handle(TOPIC, [payment(xero, "pay_1", ts=at(1), amount=400)])

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["version"]) == (700, 2)
    assert row["field_meta"]["amount_due"]["source"] == str(xero.id)


async def test_a_providers_newer_amount_due_stands_against_an_older_payment(
    pool: asyncpg.Pool, xero: CreatedConnection, stripe: CreatedConnection, processor: Processor
) -> None:
    """Xero reports 300 due (it knows of a credit note the canonical model does not hold)
    after the payment that reaches us later: its newer figure stands."""
    await processor.handle(TOPIC, [invoice(xero, amount_due=1100)])
    await processor.handle(TOPIC, [invoice(stripe, external_id="in_s")])
    await processor.handle(TOPIC, [invoice(xero, ts=at(5), amount_due=300)])
    await processor.handle(
        TOPIC, [payment(stripe, "pi_1", ts=at(2), invoice_id="in_s", amount=400)]
    )

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["data"]["status"]) == (300, "open")
    assert [c["version"] for c in await invoice_changes(pool)] == [1, 2]


async def test_a_draft_keeps_its_status_and_a_void_invoice_is_left_alone(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    await processor.handle(TOPIC, [invoice(stripe, status="void", amount_due=0)])
    await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(1))])
    row = await the_invoice(pool)
    assert (row["data"]["status"], row["data"]["amount_due"], row["version"]) == ("void", 0, 1)

    await processor.handle(TOPIC, [invoice(stripe, ts=at(2), status="draft")])
    await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(3), amount=100)])
    row = await the_invoice(pool)
    assert (row["data"]["status"], row["data"]["amount_due"]) == ("draft", 1000)


async def test_a_payment_batched_before_its_invoice_derives_it_in_the_same_batch(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    """Stripe's payment_intent.succeeded ahead of invoice.finalized: the payment waits for
    a further pass of the batch, and the invoice is derived after it."""
    batch = [payment(stripe, "pi_1", ts=at(1), amount=400), invoice(stripe)]
    assert outcomes(await processor.handle(TOPIC, batch)) == [Outcome.APPLIED] * 2

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["data"]["status"], row["version"]) == (700, "open", 2)
    assert [c["version"] for c in await invoice_changes(pool)] == [1, 2]


async def test_a_parked_payment_released_derives_its_invoice(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    (parked,) = await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(1))])
    assert parked is not None
    assert parked.outcome == Outcome.WAITING
    await processor.handle(TOPIC, [invoice(stripe)])
    assert await processor.release(100) == 1

    row = await the_invoice(pool)
    assert (row["data"]["amount_due"], row["data"]["status"], row["version"]) == (0, "paid", 2)
    assert [c["state"]["status"] for c in await invoice_changes(pool)] == ["open", "paid"]


async def test_a_batch_without_payment_changes_runs_no_derivation(
    pool: asyncpg.Pool,
    stripe: CreatedConnection,
    processor: Processor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    derived: list[int] = []
    real = pipeline.derive_invoices

    async def counted(conn: Any, moves: Any) -> int:
        derived.append(len(moves))
        return await real(conn, moves)

    monkeypatch.setattr(pipeline, "derive_invoices", counted)
    customer = change(stripe, "customer", "cus_1", {"email": "a@example.com"}, ts=T0)
    await processor.handle(TOPIC, [invoice(stripe), customer])
    await processor.handle(TOPIC, [invoice(stripe, ts=at(1), number="INV-1A")])
    assert derived == []
    await processor.handle(TOPIC, [payment(stripe, "pi_1", ts=at(2))])
    assert derived == [1]
