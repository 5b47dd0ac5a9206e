"""PostgreSQL access: one pool factory, JSON codecs, and infrastructure errors mapped."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from schemas.errors import RetryLater

# A connection of our own or one borrowed from a pool: code that runs queries takes either.
Conn = asyncpg.Connection | PoolConnectionProxy


class DatabaseUnavailableError(RetryLater):
    """Postgres could not be reached; callers answer 503 or retry, never drop work."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, so no caller hand-serialises.
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# Plan every statement for its own arguments. asyncpg prepares each statement once per
# connection, and after five executions PostgreSQL switches to a cached generic plan, made
# while a table was small (a new deployment, a first backfill) and never revisited: lookups
# of a batch's keys in entity_links kept seq-scanning it as it grew, O(rows) per batch
# (bench/README.md). Our statements take arrays of keys; planning each costs well under 1 ms.
SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


async def keep_session(conn: asyncpg.Connection) -> None:
    """A pool's reset that sends nothing (``create_pool(..., reset=keep_session)``).

    asyncpg's default reset sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: one more round trip per acquire, which profiling put at
    23 % of outbound's CPU at 200 webhooks/s, and one per transaction of the processor. A
    service may use it only if none of the code that runs on its pool leaves session state
    behind: no session-level advisory locks (only ``pg_advisory_xact_lock``, released at
    commit), no LISTEN left on a released connection, no SQL cursors, no SET or set_config
    outside a transaction. asyncpg still rolls back a transaction left open and drops its
    listener callbacks before calling this (``Connection._reset``).
    tests/unit/test_pool_session_state.py reads the code of each service that uses it and
    fails on those statements; code that needs session state takes its own connection.
    """


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    connect_timeout_seconds: float = 10.0,
    **kwargs: Any,
) -> asyncpg.Pool:
    """Open a pool; connection failures become :class:`DatabaseUnavailableError`."""
    server_settings = SERVER_SETTINGS | kwargs.pop("server_settings", {})
    try:
        pool = await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout_seconds,
            init=_init_connection,
            server_settings=server_settings,
            **kwargs,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from None
    if pool is None:  # only when the pool is not awaited; keeps the return type honest
        raise DatabaseUnavailableError("asyncpg returned no pool")
    return pool


async def connect(dsn: str, *, connect_timeout_seconds: float = 10.0) -> asyncpg.Connection:
    """One connection with the same codecs as the pool's, for CLI commands."""
    try:
        conn = await asyncpg.connect(
            dsn, timeout=connect_timeout_seconds, server_settings=SERVER_SETTINGS
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from None
    await _init_connection(conn)
    return conn


async def ping(pool: asyncpg.Pool) -> None:
    try:
        await pool.fetchval("SELECT 1", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnavailableError(str(exc)) from None


async def drop_database(conn: Conn, name: str, *, attempts: int = 5) -> None:
    """Drop database ``name`` (if it exists), ending this role's sessions in it first.

    Not ``DROP DATABASE … WITH (FORCE)``: FORCE also tries to terminate autovacuum
    workers, and a role that is not a superuser (ours) is refused with
    InsufficientPrivilegeError whenever one happens to be analysing the database. Instead
    new connections are refused first (a pool would reconnect at once), this role's
    sessions are ended, and a plain DROP signals autovacuum workers itself and waits up to
    5 s for them. The caller must own the database.
    """
    quoted = '"' + name.replace('"', '""') + '"'
    try:
        await conn.execute(f"ALTER DATABASE {quoted} ALLOW_CONNECTIONS false")
    except asyncpg.InvalidCatalogNameError:
        return  # already gone
    for attempt in range(attempts):
        await conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()",
            name,
        )
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quoted}")
            return
        except asyncpg.ObjectInUseError:  # another role's session, or one mid-login
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
