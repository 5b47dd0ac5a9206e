"""Scoped API keys of a tenant: created (shown once), looked up by hash, rotated, revoked.

A key is ``csk_`` + 256 random bits; only its SHA-256 hash and its first characters (to
tell keys apart in a list) are stored. ``admin`` keys may do everything in the admin API,
``read`` keys only read, ``publish`` keys only publish changes to ingest.

``last_used_at`` and the requests per key per day (``api_key_usage``) are kept without a
write per request: :class:`LastUsedRecorder` collects them in memory and writes them in one
transaction every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

import asyncpg

from crmsync.common.crypto import hash_api_key, new_api_key
from crmsync.common.db import Conn

log = logging.getLogger(__name__)

Scope = Literal["admin", "read", "publish"]
SCOPES: tuple[Scope, ...] = ("admin", "read", "publish")
# Enough of the key to tell keys apart in a list ("csk_" + 8), far too little to guess it.
PREFIX_CHARS = 12


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its tenant and its scope."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    scope: Scope
    connection_id: uuid.UUID | None


@dataclass(frozen=True)
class CreatedKey:
    id: uuid.UUID
    tenant_id: uuid.UUID
    scope: Scope
    key: str
    key_prefix: str
    expires_at: datetime | None


async def ensure_tenant(conn: Conn, slug: str) -> uuid.UUID:
    """The tenant's id; the tenant is created if new (like ``connections add`` does)."""
    tenant_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO tenants (slug, name) VALUES ($1, $1)
        ON CONFLICT (slug) DO UPDATE SET slug = EXCLUDED.slug
        RETURNING id
        """,
        slug,
    )
    return tenant_id


async def create_key(
    conn: Conn,
    tenant_id: uuid.UUID,
    scope: Scope,
    *,
    expires_at: datetime | None = None,
    connection_id: uuid.UUID | None = None,
) -> CreatedKey:
    key = new_api_key()
    key_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO api_keys (tenant_id, connection_id, scope, key_hash, key_prefix, expires_at)
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
        """,
        tenant_id,
        connection_id,
        scope,
        hash_api_key(key),
        key[:PREFIX_CHARS],
        expires_at,
    )
    return CreatedKey(key_id, tenant_id, scope, key, key[:PREFIX_CHARS], expires_at)


async def authenticate(conn: Conn | asyncpg.Pool, key: str) -> Principal | None:
    """The principal of a valid (known, unrevoked, unexpired) key, else None."""
    row = await conn.fetchrow(
        """
        SELECT id, tenant_id, scope, connection_id FROM api_keys
         WHERE key_hash = $1 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > now())
        """,
        hash_api_key(key),
    )
    if row is None:
        return None
    return Principal(row["id"], row["tenant_id"], row["scope"], row["connection_id"])


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


# One write per this many seconds at most, whatever the request rate: last-used time is
# for an operator deciding whether a key is still in use, so a minute's precision is ample.
FLUSH_INTERVAL_SECONDS = 10.0


class LastUsedRecorder:
    """Batches ``last_used_at`` updates: ``touch`` is in-memory, ``flush`` one statement."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        interval_seconds: float = FLUSH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._interval = interval_seconds
        self._clock = clock
        self._seen: dict[uuid.UUID, float] = {}
        # Requests per (key, UTC day) since the last flush: added to api_key_usage.
        self._counts: Counter[tuple[uuid.UUID, date]] = Counter()
        self.writes = 0

    def touch(self, key_id: uuid.UUID) -> None:
        now = self._clock()
        self._seen[key_id] = now
        self._counts[(key_id, datetime.fromtimestamp(now, UTC).date())] += 1

    async def flush(self) -> int:
        """Write what was seen since the last flush; returns the number of keys written."""
        if not self._seen:
            return 0
        seen, self._seen = self._seen, {}
        counts, self._counts = self._counts, Counter()
        ids = list(seen)
        stamps = [datetime.fromtimestamp(seen[i], UTC) for i in ids]
        used = list(counts)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    """
                    UPDATE api_keys k SET last_used_at = u.at
                      FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at)
                     WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)
                    """,
                    ids,
                    stamps,
                )
                # A key deleted meanwhile has no row to count against: the join drops it.
                await conn.execute(
                    """
                    INSERT INTO api_key_usage AS u (key_id, day, requests)
                    SELECT c.key_id, c.day, c.requests
                      FROM unnest($1::uuid[], $2::date[], $3::bigint[]) AS c(key_id, day, requests)
                      JOIN api_keys k ON k.id = c.key_id
                    ON CONFLICT (key_id, day)
                    DO UPDATE SET requests = u.requests + excluded.requests
                    """,
                    [k for k, _ in used],
                    [d for _, d in used],
                    [counts[u] for u in used],
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            # Put them back (newer touches win, counts add up) and try again next time.
            for key_id, at in seen.items():
                self._seen[key_id] = max(at, self._seen.get(key_id, at))
            self._counts.update(counts)
            log.warning("api key last-used times not written, will retry: %s", exc)
            return 0
        self.writes += 1
        return len(ids)

    async def run(self) -> None:
        """Flush every interval until cancelled (the owner flushes once more on stop)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
