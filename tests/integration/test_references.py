"""Invariant 10 against the real PostgreSQL: a change that names a record not linked yet
(a payment's invoice, an invoice's customer) waits for it; it is never applied without it.

Issue 17 item 2: Stripe sends ``invoice.*`` and ``payment_intent.succeeded`` within the
same second, so both often land in one batch, the payment first as often as not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing, generate_master_key
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange
from services.processor import metrics
from services.processor.deadletters import Source
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from services.processor.sweep import WaitingSweep

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
TOPIC = topics.CHANGES_NORMALIZED.name
_offsets = itertools.count()
KEYRING = KeyRing.parse(generate_master_key())


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def stripe(pool: asyncpg.Pool) -> CreatedConnection:
    async with pool.acquire() as conn:
        return await create_connection(
            conn, KEYRING, tenant="acme", provider="internal", name="stripe",
            webhook_secret=None, settings={},
        )  # fmt: skip


@pytest.fixture(params=["set_based", "one_by_one"])
def processor(request: pytest.FixtureRequest, pool: asyncpg.Pool) -> Processor:
    return Processor(pool, set_based=request.param == "set_based")


def change(
    conn: CreatedConnection, entity_type: str, external_id: str, data: dict[str, Any], **fields: Any
) -> Source:
    """``internal_change`` (the same arguments) as the processor's source reads it."""
    event = internal_change(conn, entity_type, external_id, data, **fields)
    return Source(TOPIC, 0, next(_offsets), external_id.encode(), event.model_dump_json().encode())


def internal_change(
    conn: CreatedConnection,
    entity_type: str,
    external_id: str,
    data: dict[str, Any],
    *,
    ts: datetime,
    refs: dict[str, str] | None = None,
    op: str = "upsert",
    event_id: str | None = None,
) -> InternalChange:
    """A change from the internal connection ``conn`` as changes.internal carries it."""
    return InternalChange(
        tenant_id=conn.tenant_id,
        connection_id=conn.id,
        received_at=datetime.now(UTC),
        change=ChangeEvent.model_validate(
            {
                "event_id": event_id or uuid.uuid4().hex,
                "entity_type": entity_type,
                "op": op,
                "external_id": external_id,
                "occurred_at": ts,
                "data": data,
                "refs": refs or {},
            }
        ),
    )


def invoice(conn: CreatedConnection, external_id: str = "in_1", *, ts: datetime = T0) -> Source:
    return change(
        conn, "invoice", external_id, {"number": "INV-1", "currency": "AUD", "total": 1100}, ts=ts
    )


def payment(
    conn: CreatedConnection,
    external_id: str = "pi_1",
    invoice_id: str = "in_1",
    *,
    ts: datetime = T0,
    amount: int = 1100,
    event_id: str | None = None,
) -> Source:
    return change(
        conn,
        "payment",
        external_id,
        {"amount": amount, "currency": "AUD", "status": "succeeded"},
        ts=ts,
        refs={"invoice_id": invoice_id},
        event_id=event_id,
    )


async def invoice_id(pool: asyncpg.Pool) -> uuid.UUID:
    found: uuid.UUID = await pool.fetchval("SELECT id FROM invoices")
    return found


async def payments(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT id, data, version FROM payments ORDER BY created_at")


async def payment_changes(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE entity_type = 'payment' ORDER BY version"
    )
    return [r["payload"]["state"] for r in rows]


@pytest.mark.parametrize("order", ["payment_first", "invoice_first"])
async def test_a_payment_and_its_invoice_in_one_batch_keep_the_link(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor, order: str
) -> None:
    batch = [payment(stripe, ts=at(1)), invoice(stripe)]
    if order == "invoice_first":
        batch.reverse()
    results = await processor.handle(TOPIC, batch)
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    (row,) = await payments(pool)
    assert row["data"]["invoice_id"] == str(await invoice_id(pool))
    # Never emitted without it: the only change of the payment carries the link.
    assert [s.get("invoice_id") for s in await payment_changes(pool)] == [
        str(await invoice_id(pool))
    ]
    assert await pool.fetchval("SELECT count(*) FROM waiting_changes") == 0


async def test_later_changes_of_a_waiting_payment_in_its_batch_keep_their_order(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    batch = [
        payment(stripe, ts=at(1), amount=1000),
        payment(stripe, ts=at(2), amount=1100),
        invoice(stripe),
    ]
    await processor.handle(TOPIC, batch)
    (row,) = await payments(pool)
    assert row["data"]["amount"] == 1100
    assert row["version"] == 2
    linked = str(await invoice_id(pool))
    assert [(s["amount"], s["invoice_id"]) for s in await payment_changes(pool)] == [
        (1000, linked),
        (1100, linked),
    ]


async def test_a_payment_batches_before_its_invoice_waits_and_applies_once_it_is_linked(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    (waiting,) = await processor.handle(TOPIC, [payment(stripe, ts=at(1))])
    assert await payments(pool) == []
    assert await payment_changes(pool) == []
    assert waiting is not None
    assert waiting.outcome == Outcome.WAITING
    # A later change of the same payment waits behind it, though it names nothing new.
    (behind,) = await processor.handle(
        TOPIC, [change(stripe, "payment", "pi_1", {"status": "refunded"}, ts=at(5))]
    )
    assert behind is not None
    assert behind.outcome == Outcome.WAITING
    assert await payments(pool) == []

    (applied,) = await processor.handle(TOPIC, [invoice(stripe)])
    assert applied is not None
    assert applied.outcome == Outcome.APPLIED
    assert await processor.release(100) == 2
    (row,) = await payments(pool)
    assert row["data"]["invoice_id"] == str(await invoice_id(pool))
    assert row["data"]["status"] == "refunded"
    assert [s["status"] for s in await payment_changes(pool)] == ["succeeded", "refunded"]
    assert await pool.fetchval("SELECT count(*) FROM waiting_changes") == 0
    assert await processor.release(100) == 0


async def test_a_parked_change_delivered_again_is_parked_once_and_applied_once(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    first = payment(stripe, ts=at(1), event_id="evt_pi_1")
    await processor.handle(TOPIC, [first])
    (again,) = await processor.handle(TOPIC, [first])
    assert await payments(pool) == []
    assert again is not None
    assert again.outcome == Outcome.WAITING
    assert await pool.fetchval("SELECT count(*) FROM waiting_changes") == 1
    await processor.handle(TOPIC, [invoice(stripe)])
    assert await processor.release(100) == 1
    assert len(await payment_changes(pool)) == 1
    (dup,) = await processor.handle(TOPIC, [first])
    assert dup is not None
    assert dup.outcome == Outcome.DUPLICATE


async def test_a_reference_not_linked_in_time_becomes_a_dead_letter_naming_it(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    source = payment(stripe, invoice_id="in_missing", ts=at(1))
    await processor.handle(TOPIC, [source])
    assert await payments(pool) == []
    assert await processor.expire(wait_seconds=3600, limit=100) == 0  # not yet
    await pool.execute("UPDATE waiting_changes SET parked_at = now() - interval '2 hours'")
    assert await processor.expire(wait_seconds=3600, limit=100) == 1
    dead = await pool.fetchrow("SELECT * FROM dead_letters")
    assert dead["reason"] == "missing_reference"
    assert "invoice in_missing (invoice_id)" in dead["detail"]
    assert dead["payload"] == source.value  # the original bytes: redrivable
    assert (dead["topic"], dead["kafka_offset"]) == (source.topic, source.offset)
    assert dead["connection_id"] == stripe.id
    assert await payments(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM waiting_changes") == 0
    # Not processed: its redrive is applied, not dropped as a duplicate.
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == 0


async def test_an_invoice_waits_for_its_customer(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    inv = change(
        stripe, "invoice", "in_1", {"number": "INV-1"}, ts=at(1), refs={"customer_id": "cus_1"}
    )
    (waiting,) = await processor.handle(TOPIC, [inv])
    assert await pool.fetchval("SELECT count(*) FROM invoices") == 0
    assert waiting is not None
    assert waiting.outcome == Outcome.WAITING
    await processor.handle(TOPIC, [change(stripe, "customer", "cus_1", {"name": "Ada"}, ts=T0)])
    assert await processor.release(100) == 1
    customer = await pool.fetchval("SELECT id FROM customers")
    assert await pool.fetchval("SELECT data->>'customer_id' FROM invoices") == str(customer)


async def test_the_sweep_releases_what_is_linked_and_dead_letters_what_waited_too_long(
    pool: asyncpg.Pool, stripe: CreatedConnection
) -> None:
    processor = Processor(pool)
    sweep = WaitingSweep(processor, pool, wait_seconds=3600)
    await processor.handle(TOPIC, [payment(stripe, "pi_1", "in_1", ts=at(1))])
    await processor.handle(TOPIC, [payment(stripe, "pi_2", "in_missing", ts=at(1))])
    await pool.execute(
        "UPDATE waiting_changes SET parked_at = now() - interval '2 hours'"
        " WHERE ref_external_id = 'in_missing'"
    )
    await processor.handle(TOPIC, [invoice(stripe, "in_1")])
    assert await sweep.round() == (1, 1)
    assert metrics.WAITING_CHANGES._value.get() == 0
    assert sweep.waiting == 0
    (row,) = await payments(pool)
    assert row["data"]["invoice_id"] == str(await invoice_id(pool))
    assert await pool.fetchval("SELECT reason FROM dead_letters") == "missing_reference"


async def test_a_parked_payment_is_applied_right_after_its_invoice_commits(
    pool: asyncpg.Pool, stripe: CreatedConnection
) -> None:
    # A sweep whose timer alone would not come round during the test.
    sweep = WaitingSweep(Processor(pool), pool, wait_seconds=3600, interval=600)
    processor = Processor(pool, on_commit=sweep.after_commit)
    running = asyncio.create_task(sweep.run())
    try:
        await asyncio.sleep(0.5)  # its first round: nothing waits yet
        await processor.handle(TOPIC, [payment(stripe, ts=at(1))])
        assert sweep.waiting == 1
        await processor.handle(TOPIC, [invoice(stripe)])
        for _ in range(100):  # 10 s at most; the sweep's timer would take 600
            if await payments(pool):
                break
            await asyncio.sleep(0.1)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    (row,) = await payments(pool)
    assert row["data"]["invoice_id"] == str(await invoice_id(pool))
