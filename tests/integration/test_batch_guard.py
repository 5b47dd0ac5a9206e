"""An agent's batch is finished or parked, never dropped: the BatchGuard against the real
PostgreSQL, with the real Processor as the handler and failures injected around it."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import asyncpg
import pytest

from crmsync.common.faults import Backoff
from crmsync.common.supervise import TaskHealth
from services.processor.deadletters import Source, dead_letter
from services.processor.guard import BatchGuard
from services.processor.pipeline import Processor
from tests.integration.test_apply import TOPIC, at, change, connect

_names = itertools.count()


def guard(pool: asyncpg.Pool) -> BatchGuard:
    return BatchGuard(
        pool,
        TaskHealth(f"test-guard-{next(_names)}"),
        topic=TOPIC,
        backoff=lambda: Backoff(base_seconds=0.001, cap_seconds=0.005),
    )


async def customers(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch("SELECT data->>'name' AS name FROM customers")
    return {r["name"] for r in rows}


async def test_a_connection_cut_mid_batch_is_retried_until_the_batch_applies(
    pool: asyncpg.Pool,
) -> None:
    crm = await connect(pool, "acme", "erp")
    batch = [change(crm, f"c-{i}", {"name": f"N{i}"}, ts=at(i)) for i in range(3)]
    processor = Processor(pool)
    calls = 0

    async def handle(sources: Sequence[Source]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            # What a PostgreSQL restart raised from the rollback of the dead connection's
            # transaction; it used to crash the agent and the batch was acknowledged.
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            )
        await processor.handle(TOPIC, sources)

    g = guard(pool)
    await g.run(batch, handle)
    assert calls == 3
    assert await customers(pool) == {"N0", "N1", "N2"}
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert g.health.failing_since is None


async def test_an_event_that_keeps_failing_is_parked_and_the_rest_applies(
    pool: asyncpg.Pool,
) -> None:
    crm = await connect(pool, "acme", "erp")
    batch = [change(crm, f"c-{i}", {"name": f"N{i}"}, ts=at(i)) for i in range(3)]
    culprit = batch[1]
    processor = Processor(pool)

    async def handle(sources: Sequence[Source]) -> None:
        if culprit in sources:
            raise KeyError("a bug in a mapping, say")
        await processor.handle(TOPIC, sources)

    await guard(pool).run(batch, handle)
    assert await customers(pool) == {"N0", "N2"}
    [letter] = await pool.fetch("SELECT * FROM dead_letters")
    assert (letter["stage"], letter["reason"]) == ("processor", "internal_error")
    assert "KeyError" in letter["detail"]
    assert letter["tenant_id"] == crm.tenant_id  # its operators see it
    assert (letter["topic"], letter["kafka_offset"]) == (culprit.topic, culprit.offset)
    assert bytes(letter["payload"]) == culprit.value  # redrivable as it was


async def test_the_guard_waits_for_postgresql_to_park_an_event(pool: asyncpg.Pool) -> None:
    crm = await connect(pool, "acme", "erp")
    [event] = [change(crm, "c-1", {"name": "N"}, ts=at(0))]
    attempts = 0

    async def handle(sources: Sequence[Source]) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("always")

    await guard(pool).run([event], handle)
    assert attempts == 3  # UNEXPECTED_ATTEMPTS, then parked
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 1


async def test_a_record_parked_twice_is_one_dead_letter(pool: asyncpg.Pool) -> None:
    """A batch retried after an outage, or handed out again after a crash, parks its bad
    records again: still one dead letter each, redriven and counted once."""
    source = Source(TOPIC, 3, 42, b"k", b"not json")
    async with pool.acquire() as conn:
        first = await dead_letter(conn, source, stage="processor", reason="unparseable", detail="x")
        again = await dead_letter(conn, source, stage="processor", reason="unparseable", detail="x")
        other = await dead_letter(
            conn, Source(TOPIC, 3, 43, b"k", b"not json"), stage="processor",
            reason="unparseable", detail="x",
        )  # fmt: skip
    assert first == again != other
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 2


@pytest.mark.parametrize(
    "sqlstate_error", [asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError]
)
async def test_an_outage_is_waited_out_without_counting_as_a_failure_of_the_event(
    pool: asyncpg.Pool, sqlstate_error: type[asyncpg.PostgresError]
) -> None:
    crm = await connect(pool, "acme", "erp")
    batch = [change(crm, "c-1", {"name": "N"}, ts=at(0))]
    processor = Processor(pool)
    calls = 0

    async def handle(sources: Sequence[Source]) -> None:
        nonlocal calls
        calls += 1
        if calls <= 5:  # more than UNEXPECTED_ATTEMPTS: an outage has no such limit
            exc = sqlstate_error("the database system is shutting down")
            exc.sqlstate = sqlstate_error.sqlstate  # type: ignore[attr-defined]
            raise exc
        await processor.handle(TOPIC, sources)

    await guard(pool).run(batch, handle)
    assert await customers(pool) == {"N"}
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
