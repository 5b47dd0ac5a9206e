"""crmsync.common.pushes against real PostgreSQL: the queue's rows from queueing to
finishing, without the outbound service around them."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import asyncpg
import pytest

from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.pushes import (
    PAUSED,
    Push,
    claim,
    finish,
    not_parked,
    queue_pushes,
    queue_stats,
    reschedule,
    wake_paused,
)


@pytest.fixture
async def target(pool: asyncpg.Pool) -> CreatedConnection:
    async with pool.acquire() as conn:
        return await create_connection(
            conn,
            KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"]),
            tenant="a",
            provider="xero",
            name="xero",
            webhook_secret="whsec",
        )


def _push(target: CreatedConnection, entity_id: uuid.UUID, version: int) -> Push:
    return Push(target.tenant_id, target.id, "customer", entity_id, version)


async def test_a_claimed_job_is_leased_and_finishing_it_removes_it(
    pool: asyncpg.Pool, target: CreatedConnection
) -> None:
    entity = uuid.uuid4()
    await queue_pushes(pool, [_push(target, entity, 2), _push(target, entity, 1)])
    depth, lag = await queue_stats(pool)
    assert depth == 1
    assert lag >= 0.0
    [job] = (await claim(pool, 10, lease_seconds=60)).jobs
    assert (job.tenant_id, job.connection_id, job.entity_id, job.version, job.attempts) == (
        target.tenant_id,
        target.id,
        entity,
        2,
        0,
    )
    # Leased: a second worker gets nothing, and learns the row comes back when the lease ends.
    again = await claim(pool, 10, lease_seconds=60)
    assert again.jobs == []
    assert again.next_due_seconds is not None
    assert 55 < again.next_due_seconds <= 60
    assert not await finish(pool, job)
    assert await queue_stats(pool) == (0, 0.0)


async def test_finishing_an_older_version_rearms_the_newer_one(
    pool: asyncpg.Pool, target: CreatedConnection
) -> None:
    entity = uuid.uuid4()
    await queue_pushes(pool, [_push(target, entity, 1)])
    [job] = (await claim(pool, 10, lease_seconds=60)).jobs
    await queue_pushes(pool, [_push(target, entity, 3)])  # queued while version 1 was pushed
    assert await finish(pool, job)
    [newer] = (await claim(pool, 10, lease_seconds=60)).jobs
    assert newer.version == 3


async def test_rescheduling_counts_the_attempt_only_when_asked(
    pool: asyncpg.Pool, target: CreatedConnection
) -> None:
    await queue_pushes(pool, [_push(target, uuid.uuid4(), 1)])
    [job] = (await claim(pool, 10, lease_seconds=60)).jobs
    await reschedule(pool, job, 0, "timeout", count_attempt=True)
    [job] = (await claim(pool, 10, lease_seconds=60)).jobs
    assert job.attempts == 1
    await reschedule(pool, job, 30, "circuit_open" + "x" * 3000, count_attempt=False)
    row = await pool.fetchrow("SELECT attempts, last_error FROM push_jobs WHERE id = $1", job.id)
    assert row is not None
    assert row["attempts"] == 1
    assert len(row["last_error"]) == 2000  # kept bounded
    claimed = await claim(pool, 10, lease_seconds=60)
    assert claimed.jobs == []
    assert claimed.next_due_seconds is not None
    assert 25 < claimed.next_due_seconds <= 30


async def test_two_multi_row_enqueues_in_opposite_orders_do_not_deadlock(
    pool: asyncpg.Pool, target: CreatedConnection
) -> None:
    # Rows that exist already are locked by ON CONFLICT DO UPDATE one by one; taken in
    # input order, two enqueues of the same rows in opposite orders meet in the middle, each
    # holding what the other waits for (PostgreSQL then fails one as a deadlock's victim).
    # Many rows make the meeting near certain on each round; sorted, they queue instead.
    entities = [uuid.uuid4() for _ in range(2000)]
    await queue_pushes(pool, [_push(target, e, 1) for e in entities])
    for version in range(2, 5):
        forward = [_push(target, e, version) for e in entities]
        both_started = asyncio.Barrier(2)

        async def enqueue(rows: list[Push], started: asyncio.Barrier) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await started.wait()
                await queue_pushes(conn, rows)

        await asyncio.gather(enqueue(forward, both_started), enqueue(forward[::-1], both_started))
    versions = await pool.fetch(
        "SELECT DISTINCT version FROM push_jobs WHERE connection_id = $1", target.id
    )
    assert [r["version"] for r in versions] == [4]


async def test_waking_paused_pushes_while_they_are_queued_again_does_not_deadlock(
    pool: asyncpg.Pool, target: CreatedConnection
) -> None:
    # A pause ends (every paused row of the connection made due) while a batch queues the
    # same records again: queue_pushes locks in key order, so waking them must too. The
    # rows are stored in the opposite order (a scan meets them so), many of them, so on a
    # scan-order UPDATE the two meet in the middle and one fails as a deadlock's victim.
    entities = sorted((uuid.uuid4() for _ in range(2000)), key=str, reverse=True)
    for version in range(2, 5):
        await pool.execute("DELETE FROM push_jobs WHERE connection_id = $1", target.id)
        await pool.execute(
            """
            INSERT INTO push_jobs (tenant_id, connection_id, entity_type, entity_id, version,
                                   last_error, next_attempt_at)
            SELECT $1, $2, 'customer', i, 1, $4, now() + interval '1 hour'
              FROM unnest($3::uuid[]) WITH ORDINALITY AS u(i, n)
             ORDER BY n
            """,
            target.tenant_id,
            target.id,
            entities,
            PAUSED,
        )
        both_started = asyncio.Barrier(2)

        async def enqueue(version: int, started: asyncio.Barrier) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await started.wait()
                await queue_pushes(conn, [_push(target, e, version) for e in entities])

        async def wake(started: asyncio.Barrier) -> int:
            async with pool.acquire() as conn, conn.transaction():
                await started.wait()
                return await wake_paused(conn, target.tenant_id, target.id)

        _, woken = await asyncio.gather(enqueue(version, both_started), wake(both_started))
        assert woken == len(entities)
    row = await pool.fetchrow(
        "SELECT min(version) AS low, max(version) AS high,"
        " count(*) FILTER (WHERE next_attempt_at > now()) AS asleep"
        " FROM push_jobs WHERE connection_id = $1",
        target.id,
    )
    assert row is not None
    assert (row["low"], row["high"], row["asleep"]) == (4, 4, 0)


async def _park(conn: asyncpg.Connection, pushes: list[Push], redriven: bool = False) -> None:
    """Outbound dead letters of these pushes, their payloads as the pusher writes them."""
    await conn.executemany(
        "INSERT INTO dead_letters (stage, reason, detail, tenant_id, connection_id, payload,"
        " redriven_at) VALUES ('outbound', 'provider_rule', 'refused', $1, $2, $3,"
        " CASE WHEN $4 THEN now() END)",
        [
            (
                p.tenant_id,
                p.connection_id,
                json.dumps(
                    {
                        "connection_id": str(p.connection_id),
                        "entity_type": p.entity_type,
                        "entity_id": str(p.entity_id),
                        "version": p.version,
                        "attempts": 1,
                    }
                ).encode(),
                redriven,
            )
            for p in pushes
        ],
    )


async def _dead_letter_rows_read(conn: asyncpg.Connection) -> int:
    """Rows of dead_letters this transaction has read so far, by any scan."""
    return int(
        await conn.fetchval(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
            " FROM pg_stat_xact_user_tables WHERE relname = 'dead_letters'"
        )
    )


async def test_not_parked_reads_only_the_records_own_parked_pushes(
    pool: asyncpg.Pool, target: CreatedConnection
) -> None:
    """An echo that fell behind asks whether the target parked that version of the record:
    with thousands of pushes parked on the connection, the answer reads that record's own
    dead letters (migration 0024), not all of them (it read each one's payload)."""
    refused, redriven, fine = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    others = [_push(target, uuid.uuid4(), 3) for _ in range(2000)]
    async with pool.acquire() as conn, conn.transaction():
        await _park(conn, [*others, _push(target, refused, 2)])
        await _park(conn, [_push(target, redriven, 5)], redriven=True)
        # A payload that is not a push's (an operator's row) is still written, and ignored.
        await conn.execute(
            "INSERT INTO dead_letters (stage, reason, tenant_id, connection_id, payload)"
            " VALUES ('outbound', 'provider_rule', $1, $2, 'not json')",
            target.tenant_id,
            target.id,
        )
        await conn.execute("ANALYZE dead_letters")
        before = await _dead_letter_rows_read(conn)
        asked = [
            _push(target, refused, 2),  # parked: not queued again
            _push(target, refused, 3),  # newer than the parked one: queued
            _push(target, redriven, 5),  # an operator redrove it: queued
            _push(target, fine, 1),  # never parked
        ]
        left = await not_parked(conn, asked)
        read = await _dead_letter_rows_read(conn) - before
    assert left == asked[1:]
    assert read <= 2, f"read {read} dead letters for one parked push"
