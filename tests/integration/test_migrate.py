from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from crmsync.common.migrate import Migration, MigrationError, load_migrations, migrate
from crmsync.common.settings import repo_root

PROJECT_MIGRATIONS = repo_root() / "infra" / "migrations"


async def test_applies_every_migration_once_then_nothing(empty_database_url: str) -> None:
    migrations = load_migrations(PROJECT_MIGRATIONS)
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await migrate(conn, migrations)
        second = await migrate(conn, migrations)
        recorded = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        tenants = await conn.fetchval("SELECT to_regclass('tenants') IS NOT NULL")
    finally:
        await conn.close()
    assert [m.version for m in first.applied] == [m.version for m in migrations]
    assert second.applied == []
    assert second.already == len(migrations) == recorded
    assert tenants


async def test_concurrent_migrators_apply_each_migration_once(empty_database_url: str) -> None:
    migrations = load_migrations(PROJECT_MIGRATIONS)
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, migrations) for c in conns))
    finally:
        for c in conns:
            await c.close()
    assert sum(len(r.applied) for r in results) == len(migrations)


async def test_a_failing_migration_leaves_no_trace(empty_database_url: str) -> None:
    good = Migration(1, "good", "CREATE TABLE a (id int)")
    bad = Migration(2, "bad", "CREATE TABLE b (id int); SELECT no_such_function()")
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, [good, bad])
        versions = await conn.fetch("SELECT version FROM schema_migrations")
        b_exists = await conn.fetchval("SELECT to_regclass('b') IS NOT NULL")
    finally:
        await conn.close()
    assert [r["version"] for r in versions] == [1]
    assert not b_exists


async def test_refuses_an_applied_migration_that_was_edited(
    empty_database_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, [Migration(1, "init", "CREATE TABLE a (id int)")])
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, [Migration(1, "init", "CREATE TABLE a (id bigint)")])
    finally:
        await conn.close()


async def test_refuses_a_database_ahead_of_the_checkout(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, [Migration(1, "a", "SELECT 1"), Migration(2, "b", "SELECT 1")])
        with pytest.raises(MigrationError, match="not on disk"):
            await migrate(conn, [Migration(1, "a", "SELECT 1")])
    finally:
        await conn.close()
