"""``crmsync sync-log --follow``: every event printed once, oldest first, including one
whose transaction drew its id before a later one but committed after it."""

from __future__ import annotations

import asyncio

import asyncpg

from crmsync.application import synclog
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.models import Page, SyncLogEntry, SyncLogQuery
from crmsync.cli.synclog import follow
from crmsync.common.apikeys import ensure_tenant
from crmsync.common.crypto import KeyRing, generate_master_key

INSERT = """
    INSERT INTO sync_log (tenant_id, direction, entity_type, external_id, outcome)
    VALUES ($1, 'in', 'customer', $2, 'applied') RETURNING id
"""


async def test_follow_prints_each_event_once_in_order_even_a_late_commit(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await ensure_tenant(conn, "acme")
        other = await ensure_tenant(conn, "globex")
        for name in ("old-1", "old-2", "old-3"):
            await conn.execute(INSERT, tenant, name)
        await conn.execute(INSERT, other, "not-mine")
    ctx = Context(
        tenant_id=tenant,
        keyring=KeyRing.parse(generate_master_key()),
        public_base_url="https://hooks.example.test",
        kafka=KafkaTarget("127.0.0.1:9092"),
        actor="test",
    )
    seen: list[SyncLogEntry] = []
    printed = asyncio.Condition()

    def out(entry: SyncLogEntry) -> None:
        seen.append(entry)
        asyncio.get_running_loop().create_task(_notify(printed))

    async def printed_(name: str) -> None:
        async with printed:
            await asyncio.wait_for(
                printed.wait_for(lambda: name in [e.external_id for e in seen]), 10
            )

    async with pool.acquire() as conn:

        async def list_page(query: SyncLogQuery) -> Page[SyncLogEntry]:
            return await synclog.list_(conn, ctx, query)

        tail = asyncio.create_task(
            follow(list_page, SyncLogQuery(limit=2), interval=0.05, out=out, polls=60)
        )
        await printed_("old-3")
        assert [e.external_id for e in seen] == ["old-2", "old-3"]
        async with pool.acquire() as slow, slow.transaction():
            late = await slow.fetchval(INSERT, tenant, "late")  # id drawn, not committed
            early = await pool.fetchval(INSERT, tenant, "early")
            assert late < early
            await printed_("early")
            await pool.execute(INSERT, other, "not-mine-either")
        # Committed now, with an id below one already printed.
        await pool.execute(INSERT, tenant, "after")
        await tail
    assert [e.external_id for e in seen] == ["old-2", "old-3", "early", "late", "after"]
    assert len({e.id for e in seen}) == len(seen)


async def _notify(condition: asyncio.Condition) -> None:
    async with condition:
        condition.notify_all()
