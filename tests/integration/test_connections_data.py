"""crmsync.common.connections against real PostgreSQL: each function reaches only the tenant
it is given (DESIGN invariant 11), and those that may read any tenant's say so with
``tenant_id=None``."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crmsync.common import connections as stored
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing


async def _connection(
    pool: asyncpg.Pool, tenant: str, name: str = "xero", *, credentials: str | None = "c"
) -> CreatedConnection:
    async with pool.acquire() as conn:
        return await create_connection(
            conn,
            KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"]),
            tenant=tenant,
            provider="xero",
            name=name,
            webhook_secret="whsec",
            base_url="http://127.0.0.1:1",
            api_credentials=credentials,
            settings={"direction": "both"},
        )


@pytest.fixture
async def two(pool: asyncpg.Pool) -> tuple[CreatedConnection, CreatedConnection]:
    """One connection of tenant a, one of tenant b."""
    return await _connection(pool, "a"), await _connection(pool, "b")


async def _column(pool: asyncpg.Pool, column: str, connection_id: uuid.UUID) -> object:
    return await pool.fetchval(
        f"SELECT {column} FROM connections WHERE id = $1",  # noqa: S608 - the test's own names
        connection_id,
    )


async def test_reads_by_id_find_only_the_tenants_own(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    a, b = two
    async with pool.acquire() as conn:
        row = await stored.connection_row(conn, a.id, tenant_id=a.tenant_id)
        assert row is not None
        assert tuple(row.keys()) == stored.CONNECTION_COLUMNS
        assert await stored.connection_row(conn, a.id, tenant_id=b.tenant_id) is None
        assert await stored.connection_row(conn, a.id, tenant_id=None) is not None
        assert await stored.connection_exists(conn, a.id, tenant_id=a.tenant_id)
        assert not await stored.connection_exists(conn, a.id, tenant_id=b.tenant_id)
        assert await stored.connection_exists(conn, a.id, tenant_id=None)
        assert not await stored.connection_exists(conn, uuid.uuid4(), tenant_id=None)
        assert await stored.view_row(conn, a.id, tenant_id=b.tenant_id) is None
        view = await stored.view_row(conn, a.id, tenant_id=a.tenant_id)
        assert view is not None
        assert view["creds"] is True
        assert await stored.provider_of(conn, a.id, tenant_id=a.tenant_id) == "xero"
        assert await stored.provider_of(conn, a.id, tenant_id=b.tenant_id) is None
        assert await stored.status_and_credentials(conn, a.id, tenant_id=b.tenant_id) is None
        async with conn.transaction():
            assert await stored.lock_settings(conn, a.id, tenant_id=b.tenant_id) is None
            locked = await stored.lock_settings(conn, a.id, tenant_id=a.tenant_id)
            assert locked is not None
            assert locked["settings"] == {"direction": "both"}


async def test_lists_are_the_tenants_or_every_tenants(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    a, b = two
    second = await _connection(pool, "a", "second")
    assert [r["id"] for r in await stored.tenant_connection_rows(pool, a.tenant_id)] == [
        a.id,
        second.id,
    ]
    assert [r["id"] for r in await stored.connection_rows(pool, tenant_id=b.tenant_id)] == [b.id]
    assert {r["id"] for r in await stored.connection_rows(pool, tenant_id=None)} == {
        a.id,
        second.id,
        b.id,
    }
    owners = await stored.connection_owners(pool, [a.id, b.id, uuid.uuid4()])
    assert {r["id"]: r["tenant_id"] for r in owners} == {a.id: a.tenant_id, b.id: b.tenant_id}
    found = await stored.find_by_name(pool, tenant="a", name="second")
    assert found is not None
    assert found["id"] == second.id
    assert found["tenant_id"] == a.tenant_id
    assert await stored.find_by_name(pool, tenant="b", name="second") is None


async def test_view_rows_page_by_created_at_and_filter(pool: asyncpg.Pool) -> None:
    first = await _connection(pool, "a", "one")
    second = await _connection(pool, "a", "two")
    async with pool.acquire() as conn:
        page = await stored.view_rows(
            conn, tenant_id=first.tenant_id, provider=None, status=None, after=None, limit=1
        )
        assert [r["id"] for r in page] == [first.id]
        rest = await stored.view_rows(
            conn,
            tenant_id=first.tenant_id,
            provider="xero",
            status="active",
            after=(page[0]["created_at"], page[0]["id"]),
            limit=10,
        )
        assert [r["id"] for r in rest] == [second.id]
        none = await stored.view_rows(
            conn, tenant_id=first.tenant_id, provider="stripe", status=None, after=None, limit=10
        )
        assert none == []


async def test_writes_by_id_leave_another_tenants_connection_alone(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    a, b = two
    before = await pool.fetchrow("SELECT * FROM connections WHERE id = $1", a.id)
    async with pool.acquire() as conn:
        await stored.save_credentials(conn, a.id, "other", tenant_id=b.tenant_id)
        await stored.mark_needs_reauth(conn, a.id, tenant_id=b.tenant_id)
        await stored.readopt(conn, a.id, tenant_id=b.tenant_id, base_url="http://x", settings={})
        await stored.mark_reconciled(
            conn, a.id, tenant_id=b.tenant_id, started_at=datetime.now(UTC), full=True
        )
        await stored.update_connection(
            conn,
            a.id,
            tenant_id=b.tenant_id,
            settings={},
            set_name=True,
            name="taken",
            set_base_url=True,
            base_url=None,
        )
        await stored.touch(conn, a.id, tenant_id=b.tenant_id)
        assert not await stored.set_status(conn, a.id, "disabled", tenant_id=b.tenant_id)
        assert not await stored.reauthorise(conn, a.id, "other", tenant_id=b.tenant_id)
        assert not await stored.delete_connection(conn, a.id, tenant_id=b.tenant_id)
    assert await pool.fetchrow("SELECT * FROM connections WHERE id = $1", a.id) == before


async def test_credentials_status_and_reauthorisation(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    a, _ = two
    async with pool.acquire() as conn:
        await stored.save_credentials(conn, a.id, "refreshed", tenant_id=a.tenant_id)
        assert await _column(pool, "credentials_encrypted", a.id) == "refreshed"
        await stored.mark_needs_reauth(conn, a.id, tenant_id=a.tenant_id)
        row = await stored.status_and_credentials(conn, a.id, tenant_id=a.tenant_id)
        assert row is not None
        assert (row["status"], row["credentials_encrypted"]) == ("needs_reauth", "refreshed")
        # Only an active connection is flagged: a disabled one stays disabled.
        assert await stored.reauthorise(conn, a.id, "new", tenant_id=a.tenant_id)
        assert await _column(pool, "status", a.id) == "active"
        assert await stored.set_status(conn, a.id, "disabled", tenant_id=a.tenant_id)
        await stored.mark_needs_reauth(conn, a.id, tenant_id=a.tenant_id)
        assert await _column(pool, "status", a.id) == "disabled"
        assert await stored.reauthorise(conn, a.id, "newer", tenant_id=a.tenant_id)
        assert await _column(pool, "status", a.id) == "disabled"


async def test_update_touch_readopt_and_delete(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    a, _ = two
    other = await _connection(pool, "a", "other")
    async with pool.acquire() as conn:
        await stored.update_connection(
            conn,
            a.id,
            tenant_id=a.tenant_id,
            settings={"direction": "in"},
            set_name=True,
            name=None,  # given as null: the name stays
            set_base_url=True,
            base_url=None,
        )
        row = await stored.view_row(conn, a.id, tenant_id=a.tenant_id)
        assert row is not None
        assert (row["name"], row["base_url"], row["settings"]) == (
            "xero",
            None,
            {"direction": "in"},
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await stored.update_connection(
                conn,
                a.id,
                tenant_id=a.tenant_id,
                settings={},
                set_name=True,
                name="other",
                set_base_url=False,
                base_url="ignored",
            )
        before = await _column(pool, "updated_at", a.id)
        await stored.touch(conn, a.id, tenant_id=a.tenant_id)
        assert await _column(pool, "updated_at", a.id) >= before  # type: ignore[operator]
        await stored.set_status(conn, a.id, "disabled", tenant_id=a.tenant_id)
        await stored.readopt(
            conn, a.id, tenant_id=a.tenant_id, base_url="http://sim", settings={"x": 1}
        )
        row = await stored.view_row(conn, a.id, tenant_id=a.tenant_id)
        assert row is not None
        assert (row["status"], row["base_url"]) == ("active", "http://sim")
        assert row["settings"] == {"direction": "in", "x": 1}
        assert await stored.delete_connection(conn, other.id, tenant_id=a.tenant_id)
        assert not await stored.connection_exists(conn, other.id, tenant_id=None)


async def test_reconcile_marks_and_candidates(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    a, b = two
    no_credentials = await _connection(pool, "a", "bare", credentials=None)
    created = await _column(pool, "created_at", a.id)
    assert isinstance(created, datetime)
    since = await stored.next_modified_since(pool, a.id, 60, tenant_id=a.tenant_id)
    assert since == created - timedelta(seconds=60)
    assert await stored.next_modified_since(pool, a.id, 60, tenant_id=b.tenant_id) is None
    run = created + timedelta(hours=1)
    await stored.mark_reconciled(pool, a.id, tenant_id=a.tenant_id, started_at=run, full=False)
    assert await stored.next_modified_since(pool, a.id, 0, tenant_id=a.tenant_id) == run
    assert await _column(pool, "last_full_reconcile_at", a.id) is None
    # An older run finishing late never moves the mark back.
    await stored.mark_reconciled(pool, a.id, tenant_id=a.tenant_id, started_at=created, full=True)
    assert await _column(pool, "last_reconciled_at", a.id) == run
    assert await _column(pool, "last_full_reconcile_at", a.id) == created
    candidates = {r["id"]: r for r in await stored.reconcile_candidates(pool)}
    assert set(candidates) == {a.id, b.id}  # not the one without credentials
    assert no_credentials.id not in candidates
    assert candidates[a.id]["last_tried_at"] is None


async def test_owners_say_whose_tenant_erased_and_whether_anything_waits(
    pool: asyncpg.Pool, two: tuple[CreatedConnection, CreatedConnection]
) -> None:
    """The processor's first statement of a batch also answers its next two questions."""
    a, b = two
    owners = await stored.connection_owners(pool, [a.id, b.id])
    assert {r["id"]: (r["erasing"], r["waiting"]) for r in owners} == {
        a.id: (False, False),
        b.id: (False, False),
    }
    await pool.execute(
        "INSERT INTO privacy_tombstones (tenant_id, entity_id, identity_hash, erased_by)"
        " VALUES ($1, $2, 'sha256:x', 'test')",
        a.tenant_id,
        uuid.uuid4(),
    )
    owners = await stored.connection_owners(pool, [a.id, b.id])
    assert {r["id"]: r["erasing"] for r in owners} == {a.id: True, b.id: False}
