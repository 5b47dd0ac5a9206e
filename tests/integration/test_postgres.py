"""The pool factory against the real PostgreSQL of the local stack."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from crmsync.common.db import DatabaseUnavailableError, create_pool, drop_database
from crmsync.common.settings import CommonSettings
from tests.conftest import with_database


async def test_row_written_is_read_back_with_jsonb_as_objects(pool: asyncpg.Pool) -> None:
    tenant_id = await pool.fetchval(
        "INSERT INTO tenants (slug, name) VALUES ('acme', 'Acme Plumbing') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO connections (tenant_id, provider, name, settings) VALUES ($1, $2, $3, $4)",
        tenant_id,
        "stripe",
        "Stripe live",
        {"direction": "both", "entity_types": ["customer", "invoice"]},
    )
    row = await pool.fetchrow(
        "SELECT provider, settings FROM connections WHERE tenant_id = $1", tenant_id
    )
    assert row is not None
    assert row["provider"] == "stripe"
    assert row["settings"] == {"direction": "both", "entity_types": ["customer", "invoice"]}


async def test_tenant_slug_is_validated_by_the_schema(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("INSERT INTO tenants (slug, name) VALUES ('Not A Slug!', 'x')")


async def test_each_test_gets_an_empty_database(pool: asyncpg.Pool) -> None:
    # test_row_written... inserted a tenant; isolation means none is visible here.
    assert await pool.fetchval("SELECT count(*) FROM tenants") == 0


async def test_unreachable_database_is_a_domain_error() -> None:
    with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
        await create_pool(
            "postgresql://nobody:x@127.0.0.1:1/none", min_size=1, connect_timeout_seconds=2
        )


async def test_drop_database_ends_our_sessions_and_tolerates_a_missing_one(
    common_settings: CommonSettings,
) -> None:
    name = f"crmsync_drop_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(common_settings.database_url, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(common_settings.database_url, name)
        pool = await create_pool(url, min_size=2)  # reconnects when its sessions end
        busy = await asyncpg.connect(url)
        try:
            await busy.execute("BEGIN; CREATE TABLE t (id int)")  # an open transaction

            await drop_database(admin, name)

            exists = "SELECT count(*) FROM pg_database WHERE datname = $1"
            assert await admin.fetchval(exists, name) == 0
            with pytest.raises((asyncpg.InterfaceError, asyncpg.AdminShutdownError)):
                await busy.execute("SELECT 1")
        finally:
            busy.terminate()
            pool.terminate()
        await drop_database(admin, name)  # already gone: not an error
    finally:
        await admin.close()
