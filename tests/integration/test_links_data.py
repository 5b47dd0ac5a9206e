"""crmsync.common.links against real PostgreSQL: lookups by a connection's keys, and reads
from a record's id that reach only the tenant's links."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crmsync.common import links
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@dataclass
class World:
    pool: asyncpg.Pool
    a: CreatedConnection  # tenant a's
    b: CreatedConnection  # tenant b's

    async def customer(self, tenant_id: uuid.UUID, *, deleted: bool = False) -> uuid.UUID:
        entity_id: uuid.UUID = await self.pool.fetchval(
            "INSERT INTO customers (tenant_id, data, deleted_at) VALUES ($1, '{}', $2)"
            " RETURNING id",
            tenant_id,
            T0 if deleted else None,
        )
        return entity_id

    async def link(
        self,
        connection: CreatedConnection,
        entity_id: uuid.UUID,
        external_id: str,
        *,
        remote_updated_at: datetime | None = None,
    ) -> None:
        await self.pool.execute(
            """
            INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,
                                      external_id, remote_updated_at)
            VALUES ($1, $2, 'customer', $3, $4, $5)
            """,
            connection.tenant_id,
            connection.id,
            entity_id,
            external_id,
            remote_updated_at,
        )


@pytest.fixture
async def world(pool: asyncpg.Pool) -> World:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    made = []
    async with pool.acquire() as conn:
        for tenant in ("a", "b"):
            made.append(
                await create_connection(
                    conn,
                    keyring,
                    tenant=tenant,
                    provider="xero",
                    name="xero",
                    webhook_secret="whsec",
                )
            )
    return World(pool, *made)


async def test_lookups_by_the_connections_keys(world: World) -> None:
    one, two = await world.customer(world.a.tenant_id), await world.customer(world.a.tenant_id)
    await world.link(world.a, one, "x-1", remote_updated_at=T0)
    await world.link(world.a, two, "x-2")
    theirs = await world.customer(world.b.tenant_id)
    await world.link(world.b, theirs, "x-1")
    found = await links.entity_ids(
        world.pool,
        [
            (world.a.id, "customer", "x-1"),
            (world.a.id, "customer", "x-3"),
            (world.b.id, "customer", "x-1"),
            (world.a.id, "invoice", "x-2"),
        ],
    )
    assert found == {(world.a.id, "customer", "x-1"): one, (world.b.id, "customer", "x-1"): theirs}
    assert await links.entity_ids(world.pool, []) == {}
    assert await links.remote_updated_at(
        world.pool, world.a.id, "customer", ["x-1", "x-2", "x-9"]
    ) == {
        "x-1": T0,
        "x-2": None,
    }
    assert await links.count_links(world.pool, world.a.id, "customer") == 2
    assert await links.count_links(world.pool, world.a.id, "invoice") == 0
    assert await links.external_ids(world.pool, world.a.id, "customer") == {"x-1": one, "x-2": two}


async def test_unlisted_links_are_live_older_and_not_seen_by_the_job(world: World) -> None:
    tenant = world.a.tenant_id
    seen, unseen, gone = [await world.customer(tenant) for _ in range(3)]
    deleted = await world.customer(tenant, deleted=True)
    for n, entity_id in enumerate([seen, unseen, gone, deleted]):
        await world.link(world.a, entity_id, f"x-{n}")
    job_id: uuid.UUID = await world.pool.fetchval(
        "INSERT INTO sync_jobs (tenant_id, connection_id, kind, entity_types)"
        " VALUES ($1, $2, 'full_reconcile', '{customer}') RETURNING id",
        tenant,
        world.a.id,
    )
    await world.pool.execute(
        "INSERT INTO sync_job_seen (job_id, entity_type, external_id)"
        " VALUES ($1, 'customer', 'x-0')",
        job_id,
    )
    later = datetime.now(UTC) + timedelta(minutes=1)
    unlisted = await links.unlisted_external_ids(
        world.pool,
        connection_id=world.a.id,
        entity_type="customer",
        created_before=later,
        job_id=job_id,
    )
    assert sorted(unlisted) == ["x-1", "x-2"]  # not the seen one, not the deleted record's
    # Links made after the run started are not judged by it.
    assert (
        await links.unlisted_external_ids(
            world.pool,
            connection_id=world.a.id,
            entity_type="customer",
            created_before=T0,
            job_id=job_id,
        )
        == []
    )


async def test_reads_from_a_records_id_reach_only_the_tenants_links(world: World) -> None:
    mine = await world.customer(world.a.tenant_id)
    await world.link(world.a, mine, "x-1")
    # Issue 15's bug: tenant b's connection linked to tenant a's record.
    await world.link(world.b, mine, "foreign")
    rows = await links.record_links(world.pool, "customer", [mine], tenant_id=world.a.tenant_id)
    assert [(r["connection_id"], r["provider"], r["external_id"]) for r in rows] == [
        (world.a.id, "xero", "x-1")
    ]
    assert await links.record_links(world.pool, "customer", [mine], tenant_id=uuid.uuid4()) == []

    row = await links.record_and_link(
        world.pool, "customer", mine, world.a.id, tenant_id=world.a.tenant_id
    )
    assert row is not None
    assert (row["version"], row["deleted"], row["external_id"]) == (1, False, "x-1")
    # Another tenant asking about the record: not found, whatever links exist.
    assert (
        await links.record_and_link(
            world.pool, "customer", mine, world.b.id, tenant_id=world.b.tenant_id
        )
        is None
    )
    unlinked = await world.customer(world.a.tenant_id)
    row = await links.record_and_link(
        world.pool, "customer", unlinked, world.a.id, tenant_id=world.a.tenant_id
    )
    assert row is not None
    assert row["external_id"] is None
