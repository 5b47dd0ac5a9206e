"""A connection of a tenant of its own, made in the test's database, for integration tests
that need one row and nothing of the tenant's other connections."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing


async def lone_connection(
    pool: asyncpg.Pool,
    keyring: KeyRing,
    *,
    provider: str,
    name: str,
    webhook_secret: str | None,
    **fields: Any,
) -> CreatedConnection:
    """``create_connection`` for a new tenant (``t-`` and 8 hex digits, so tests never
    share one); ``fields``: its other keyword arguments (base_url, settings, …)."""
    async with pool.acquire() as conn:
        return await create_connection(
            conn,
            keyring,
            tenant=f"t-{uuid.uuid4().hex[:8]}",
            provider=provider,
            name=name,
            webhook_secret=webhook_secret,
            **fields,
        )
