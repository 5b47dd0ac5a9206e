"""Connections and their secrets in Postgres: the one data-access module for them.

Ingest reads (every active connection with its current secrets, and publish keys);
the CLI and the admin API write. Secrets are decrypted only in memory of the reader.
Every statement on the ``connections`` table is here; a unit test
(tests/unit/test_data_access.py) keeps it so. A function that reads by id takes the
tenant; the few that may read any tenant's say so, and why, in their docstring.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

from crmsync.common.crypto import CryptoError, KeyRing, hash_api_key, new_api_key
from crmsync.common.db import Conn

log = logging.getLogger(__name__)


def secret_context(connection_id: uuid.UUID) -> str:
    """Associated data binding a webhook secret's ciphertext to its connection."""
    return f"webhook-secret:{connection_id}"


@dataclass(frozen=True)
class CreatedConnection:
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant: str
    provider: str
    name: str
    webhook_secret: str | None = None
    api_key: str | None = None
    handshakes_until: datetime | None = None


@dataclass(frozen=True)
class WebhookSecret:
    value: str = field(repr=False)
    # Unix seconds after which it no longer verifies; None while it is the current one.
    expires_at: float | None


@dataclass(frozen=True)
class ActiveConnection:
    """What ingest needs of a connection, secrets decrypted, newest secret first."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    provider: str
    settings: dict[str, Any]
    secrets: tuple[WebhookSecret, ...] = field(repr=False)

    def secrets_at(self, now: float) -> list[str]:
        """The secrets that verify at ``now``: checked per request, not per cache refresh."""
        return [s.value for s in self.secrets if s.expires_at is None or s.expires_at > now]


@dataclass(frozen=True)
class PublishKey:
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    # The api_keys row, for its last-used time (crmsync.common.apikeys.LastUsedRecorder).
    key_id: uuid.UUID | None = None


async def create_connection(
    conn: Conn,
    keyring: KeyRing,
    *,
    tenant: str,
    provider: str,
    name: str,
    webhook_secret: str | None,
    base_url: str | None = None,
    api_credentials: str | None = None,
    settings: dict[str, Any] | None = None,
    handshakes_until: datetime | None = None,
) -> CreatedConnection:
    """Create the tenant if new, the connection, its first webhook secret or publish key.
    ``handshakes_until``: it takes its provider's subscription handshakes until then (see
    ``receive_handshake``).

    The tenant's connections quota is the caller's to check, in the same transaction
    (``quotas.check_connection_room``): quotas counts connections through this module."""
    async with conn.transaction():
        tenant_id = await conn.fetchval(
            """
            INSERT INTO tenants (slug, name) VALUES ($1, $1)
            ON CONFLICT (slug) DO UPDATE SET slug = EXCLUDED.slug
            RETURNING id
            """,
            tenant,
        )
        connection_id: uuid.UUID = await conn.fetchval(
            """
            INSERT INTO connections (tenant_id, provider, name, base_url, settings,
                                     handshakes_until)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
            """,
            tenant_id,
            provider,
            name,
            base_url,
            settings or {},
            handshakes_until,
        )
        if api_credentials is not None:
            await save_credentials(
                conn,
                connection_id,
                keyring.encrypt(api_credentials, f"credentials:{connection_id}"),
                tenant_id=tenant_id,
            )
        api_key = None
        if provider == "internal":
            api_key = new_api_key()
            await conn.execute(
                """
                INSERT INTO api_keys (tenant_id, connection_id, scope, key_hash, key_prefix)
                VALUES ($1, $2, 'publish', $3, $4)
                """,
                tenant_id,
                connection_id,
                hash_api_key(api_key),
                api_key[:12],
            )
        elif webhook_secret is not None:
            await add_webhook_secret(conn, keyring, connection_id, webhook_secret)
    return CreatedConnection(
        connection_id, tenant_id, tenant, provider, name, webhook_secret, api_key, handshakes_until
    )


async def add_webhook_secret(
    conn: Conn,
    keyring: KeyRing,
    connection_id: uuid.UUID,
    secret: str,
    *,
    retire_current_at: datetime | None = None,
) -> None:
    """Add a secret; with ``retire_current_at`` the current ones expire then (rotation)."""
    async with conn.transaction():
        if retire_current_at is not None:
            await conn.execute(
                """
                UPDATE webhook_secrets SET expires_at = $2
                 WHERE connection_id = $1 AND (expires_at IS NULL OR expires_at > $2)
                """,
                connection_id,
                retire_current_at,
            )
        await conn.execute(
            "INSERT INTO webhook_secrets (connection_id, secret_encrypted) VALUES ($1, $2)",
            connection_id,
            keyring.encrypt(secret, secret_context(connection_id)),
        )


async def load_active(
    conn: Conn, keyring: KeyRing
) -> tuple[dict[uuid.UUID, ActiveConnection], dict[str, PublishKey]]:
    """Every active connection with its unexpired secrets, and every valid publish key."""
    rows = await conn.fetch(
        """
        SELECT c.id, c.tenant_id, c.provider, c.settings,
               coalesce(array_agg(s.secret_encrypted ORDER BY s.created_at DESC)
                        FILTER (WHERE s.id IS NOT NULL), '{}') AS secrets,
               coalesce(array_agg(extract(epoch FROM s.expires_at)::float8
                                  ORDER BY s.created_at DESC)
                        FILTER (WHERE s.id IS NOT NULL), '{}') AS expiries
          FROM connections c
          LEFT JOIN webhook_secrets s
                 ON s.connection_id = c.id AND (s.expires_at IS NULL OR s.expires_at > now())
         WHERE c.status = 'active'
         GROUP BY c.id
        """
    )
    connections = {}
    for r in rows:
        try:
            secrets = tuple(
                WebhookSecret(keyring.decrypt(s, secret_context(r["id"])), expiry)
                for s, expiry in zip(r["secrets"], r["expiries"], strict=True)
            )
        except CryptoError as exc:
            # One unreadable connection (a key missing from the ring) must not take every
            # other connection down with it: skip it, loudly.
            log.error(
                "connection skipped, its webhook secret does not decrypt: %s",
                exc,
                extra={"connection": str(r["id"]), "tenant": str(r["tenant_id"])},
            )
            continue
        connections[r["id"]] = ActiveConnection(
            r["id"], r["tenant_id"], r["provider"], r["settings"], secrets
        )
    keys = await conn.fetch(
        """
        SELECT k.id, k.key_hash, k.tenant_id, k.connection_id
          FROM api_keys k JOIN connections c ON c.id = k.connection_id
         WHERE k.scope = 'publish' AND k.revoked_at IS NULL
           AND (k.expires_at IS NULL OR k.expires_at > now()) AND c.status = 'active'
        """
    )
    publish = {r["key_hash"]: PublishKey(r["tenant_id"], r["connection_id"], r["id"]) for r in keys}
    return connections, publish


# -- one connection's row, as the runtime builds its clients from it ----------------------

# The columns connectors.runtime.ConnectionInfo is built from, in its field order (a unit
# test keeps the two in step).
CONNECTION_COLUMNS = (
    "id",
    "tenant_id",
    "provider",
    "name",
    "status",
    "settings",
    "base_url",
    "credentials_encrypted",
    "updated_at",
)
_COLUMNS = ", ".join(CONNECTION_COLUMNS)


async def connection_row(
    conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, *, tenant_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """The connection's row (CONNECTION_COLUMNS); None when it is not there, or not
    ``tenant_id``'s. ``tenant_id=None`` reads any tenant's: only for an id read from our own
    rows (an envelope ingest stamped, a sync job) or an operator's command, never one a
    tenant sent."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM connections WHERE id = $1"  # noqa: S608 - constant columns
        " AND ($2::uuid IS NULL OR tenant_id = $2)",
        connection_id,
        tenant_id,
    )
    return row


async def tenant_connection_rows(
    conn: Conn | asyncpg.Pool, tenant_id: uuid.UUID
) -> list[asyncpg.Record]:
    """Every connection of the tenant (CONNECTION_COLUMNS), oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {_COLUMNS} FROM connections WHERE tenant_id = $1 ORDER BY created_at",  # noqa: S608
        tenant_id,
    )
    return rows


async def connection_rows(
    conn: Conn | asyncpg.Pool, *, tenant_id: uuid.UUID | None
) -> list[asyncpg.Record]:
    """The tenant's connections (CONNECTION_COLUMNS and created_at), oldest first;
    ``tenant_id=None``: every tenant's, for an operator's ledger of the whole system."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {_COLUMNS}, created_at FROM connections
         WHERE $1::uuid IS NULL OR tenant_id = $1 ORDER BY created_at, id
        """,  # noqa: S608 - constant columns
        tenant_id,
    )
    return rows


async def connection_exists(
    conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, *, tenant_id: uuid.UUID | None
) -> bool:
    """Whether the connection exists (and is ``tenant_id``'s; None: any tenant's, for an
    operator's command)."""
    found = await conn.fetchval(
        "SELECT 1 FROM connections WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2)",
        connection_id,
        tenant_id,
    )
    return found is not None


async def connection_owners(
    conn: Conn | asyncpg.Pool, connection_ids: Sequence[uuid.UUID]
) -> list[asyncpg.Record]:
    """(id, tenant_id, provider, settings, paused_in, erasing, waiting) of each of these
    connections that exists, whoever's it is: the processor compares each owner with the
    tenant its change names, so a change naming another tenant's connection is refused
    rather than silently not found.
    ``paused_in``: an inbound pause or freeze window of it or its tenant is in force (the
    processor parks its changes until it ends).
    ``erasing``: its tenant holds a privacy erase's tombstone (the processor looks no
    further for the changes of a tenant without one: services/processor/tombstones.py).
    ``waiting``: any change at all waits in waiting_changes, the same on every row.
    The last two are the processor's other questions at the start of a batch, asked here
    rather than in two more round trips (bench/README.md, "Ninth round")."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT c.id, c.tenant_id, c.provider, c.settings,
               EXISTS (SELECT 1 FROM pauses p
                        WHERE p.tenant_id = c.tenant_id AND p.inbound
                          AND (p.connection_id IS NULL OR p.connection_id = c.id)
                          AND p.starts_at <= now() AND (p.ends_at IS NULL OR p.ends_at > now()))
                 AS paused_in,
               EXISTS (SELECT 1 FROM privacy_tombstones t WHERE t.tenant_id = c.tenant_id)
                 AS erasing,
               EXISTS (SELECT 1 FROM waiting_changes) AS waiting
          FROM connections c WHERE c.id = ANY($1::uuid[])
        """,
        list(connection_ids),
    )
    return rows


async def current_webhook_secret(
    conn: Conn, keyring: KeyRing, connection_id: uuid.UUID, *, tenant_id: uuid.UUID
) -> str | None:
    """The tenant's connection's newest webhook secret that has not expired, decrypted
    (``crmsync trigger`` signs with it, as the provider does), or None."""
    encrypted = await conn.fetchval(
        """
        SELECT s.secret_encrypted
          FROM webhook_secrets s JOIN connections c ON c.id = s.connection_id
         WHERE c.id = $1 AND c.tenant_id = $2
           AND (s.expires_at IS NULL OR s.expires_at > now())
         ORDER BY s.created_at DESC
         LIMIT 1
        """,
        connection_id,
        tenant_id,
    )
    if encrypted is None:
        return None
    secret: str = keyring.decrypt(encrypted, secret_context(connection_id))
    return secret


async def counts_by_tenant(
    conn: Conn | asyncpg.Pool, tenant_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Connections per tenant, whatever their status (any of these tenants': the quota
    check and the quota metrics count them)."""
    rows = await conn.fetch(
        """
        SELECT tenant_id, count(*) AS n FROM connections
         WHERE tenant_id = ANY ($1::uuid[]) GROUP BY tenant_id
        """,
        list(tenant_ids),
    )
    return {r["tenant_id"]: r["n"] for r in rows}


async def tenant_slug_of(conn: Conn | asyncpg.Pool, connection_id: uuid.UUID) -> str | None:
    """The slug of the connection's tenant (any tenant's: an operator's command names a
    connection of any tenant by its id, and runs for that tenant)."""
    slug: str | None = await conn.fetchval(
        "SELECT t.slug FROM connections c JOIN tenants t ON t.id = c.tenant_id WHERE c.id = $1",
        connection_id,
    )
    return slug


async def find_by_name(
    conn: Conn | asyncpg.Pool, *, tenant: str, name: str
) -> asyncpg.Record | None:
    """(id, tenant_id, provider, credentials_encrypted) of the tenant's connection
    ``name``, the tenant given by its slug (the CLI's ``tenant/name``)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        SELECT c.id, c.tenant_id, c.provider, c.credentials_encrypted
          FROM connections c JOIN tenants t ON t.id = c.tenant_id
         WHERE t.slug = $1 AND c.name = $2
        """,
        tenant,
        name,
    )
    return row


async def save_credentials(
    conn: Conn | asyncpg.Pool,
    connection_id: uuid.UUID,
    ciphertext: str,
    *,
    tenant_id: uuid.UUID,
) -> None:
    """Store the connection's encrypted API credentials (refreshed OAuth tokens included)."""
    await conn.execute(
        "UPDATE connections SET credentials_encrypted = $2 WHERE id = $1 AND tenant_id = $3",
        connection_id,
        ciphertext,
        tenant_id,
    )


async def mark_needs_reauth(
    conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, *, tenant_id: uuid.UUID
) -> None:
    """An active connection waits for an operator to authorise it again."""
    await conn.execute(
        "UPDATE connections SET status = 'needs_reauth'"
        " WHERE id = $1 AND tenant_id = $2 AND status = 'active'",
        connection_id,
        tenant_id,
    )


async def readopt(
    conn: Conn | asyncpg.Pool,
    connection_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID,
    base_url: str | None,
    settings: dict[str, Any],
) -> None:
    """Point an existing connection at ``base_url``, add ``settings`` to its own and make
    it active (the demo adopting a connection a previous run made)."""
    await conn.execute(
        """
        UPDATE connections
           SET base_url = $2, settings = settings || $3::jsonb, status = 'active',
               updated_at = now()
         WHERE id = $1 AND tenant_id = $4
        """,
        connection_id,
        base_url,
        settings,
        tenant_id,
    )


# -- reconciliation -------------------------------------------------------------------------


async def next_modified_since(
    conn: Conn | asyncpg.Pool,
    connection_id: uuid.UUID,
    overlap_seconds: float,
    *,
    tenant_id: uuid.UUID,
) -> datetime | None:
    """Where a modified-since poll of the connection starts: its last successful run (or
    its creation), less an overlap for provider clock skew."""
    since: datetime | None = await conn.fetchval(
        """
        SELECT coalesce(last_reconciled_at, created_at) - make_interval(secs => $2)
          FROM connections WHERE id = $1 AND tenant_id = $3
        """,
        connection_id,
        overlap_seconds,
        tenant_id,
    )
    return since


async def mark_reconciled(
    conn: Conn | asyncpg.Pool,
    connection_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID,
    started_at: datetime | None,
    full: bool,
) -> None:
    """A run that started at ``started_at`` succeeded: the next modified-since poll starts
    there, and a ``full`` one (the only kind that finds deletes) also moves the full mark."""
    await conn.execute(
        """
        UPDATE connections
           SET last_reconciled_at = greatest(last_reconciled_at, $2),
               last_full_reconcile_at = CASE WHEN $3 THEN $2
                                             ELSE last_full_reconcile_at END
         WHERE id = $1 AND tenant_id = $4
        """,
        connection_id,
        started_at,
        full,
        tenant_id,
    )


async def reconcile_candidates(conn: Conn | asyncpg.Pool) -> list[asyncpg.Record]:
    """Every tenant's connections a reconciliation could list (active, not internal, with
    credentials): CONNECTION_COLUMNS plus when each was last reconciled and last tried,
    and the database's ``now``. The scheduler's sweep, the one reader of all tenants."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT c.id, c.tenant_id, c.provider, c.name, c.status, c.settings, c.base_url,
               c.credentials_encrypted, c.updated_at, c.created_at, c.last_reconciled_at,
               c.last_full_reconcile_at, now() AS now,
               (SELECT max(j.created_at) FROM sync_jobs j
                 WHERE j.connection_id = c.id AND j.kind = 'reconcile') AS last_tried_at,
               (SELECT max(j.created_at) FROM sync_jobs j
                 WHERE j.connection_id = c.id AND j.kind = 'full_reconcile') AS last_full_tried_at
          FROM connections c
         WHERE c.status = 'active' AND c.provider <> 'internal'
           AND c.credentials_encrypted IS NOT NULL
        """
    )
    return rows


# -- the operator's view (admin API and CLI) ----------------------------------------------

# What an operator sees of a connection: never its credentials, only whether it has some.
_VIEW_COLUMNS = """
    id, provider, name, status, base_url, settings, credentials_encrypted IS NOT NULL AS creds,
    created_at, updated_at, last_reconciled_at, handshakes_until
"""


async def view_row(
    conn: Conn, connection_id: uuid.UUID, *, tenant_id: uuid.UUID
) -> asyncpg.Record | None:
    """The tenant's connection as an operator sees it (id, provider, name, status,
    base_url, settings, creds, created_at, updated_at, last_reconciled_at)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {_VIEW_COLUMNS} FROM connections WHERE id = $1 AND tenant_id = $2",  # noqa: S608 - constant columns
        connection_id,
        tenant_id,
    )
    return row


async def view_rows(
    conn: Conn,
    *,
    tenant_id: uuid.UUID,
    provider: str | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
    name: str | None = None,
) -> list[asyncpg.Record]:
    """Up to ``limit`` of the tenant's connections (as :func:`view_row`), oldest first,
    after the (created_at, id) cursor ``after``."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {_VIEW_COLUMNS} FROM connections
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR provider = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5::uuid))
           AND ($7::text IS NULL OR name = $7)
         ORDER BY created_at, id
         LIMIT $6
        """,  # noqa: S608 - constant columns
        tenant_id,
        provider,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
        name,
    )
    return rows


async def provider_of(conn: Conn, connection_id: uuid.UUID, *, tenant_id: uuid.UUID) -> str | None:
    """The provider of the tenant's connection; None when the tenant has no such one."""
    provider: str | None = await conn.fetchval(
        "SELECT provider FROM connections WHERE id = $1 AND tenant_id = $2",
        connection_id,
        tenant_id,
    )
    return provider


async def lock_settings(
    conn: Conn, connection_id: uuid.UUID, *, tenant_id: uuid.UUID
) -> asyncpg.Record | None:
    """(provider, settings) of the tenant's connection, the row locked until the caller's
    transaction ends: a read-modify-write of settings loses no concurrent change."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT provider, settings FROM connections WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
        connection_id,
        tenant_id,
    )
    return row


async def update_connection(
    conn: Conn,
    connection_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID,
    settings: dict[str, Any],
    set_name: bool,
    name: str | None,
    set_base_url: bool,
    base_url: str | None,
) -> None:
    """Replace the settings; the name (when ``set_name`` and ``name`` is not None) and the
    base URL (when ``set_base_url``, None clearing it) too. A name the tenant already uses
    raises asyncpg.UniqueViolationError."""
    await conn.execute(
        """
        UPDATE connections
           SET settings = $2,
               name = CASE WHEN $3 THEN coalesce($4, name) ELSE name END,
               base_url = CASE WHEN $5 THEN $6 ELSE base_url END,
               updated_at = now()
         WHERE id = $1 AND tenant_id = $7
        """,
        connection_id,
        settings,
        set_name,
        name,
        set_base_url,
        base_url,
        tenant_id,
    )


async def set_status(
    conn: Conn, connection_id: uuid.UUID, status: str, *, tenant_id: uuid.UUID
) -> bool:
    """Set the tenant's connection's status; False when the tenant has no such one."""
    return await _set(conn, connection_id, tenant_id, "status", status)


async def _set(
    conn: Conn, connection_id: uuid.UUID, tenant_id: uuid.UUID, column: str, value: object
) -> bool:
    """Set one ``column`` (a constant of this module) of the tenant's connection, and its
    ``updated_at``; False when the tenant has no such connection."""
    done = await conn.fetchval(
        f"""
        UPDATE connections SET {column} = $3, updated_at = now()
         WHERE id = $1 AND tenant_id = $2 RETURNING id
        """,  # noqa: S608 - a constant column name
        connection_id,
        tenant_id,
        value,
    )
    return done is not None


async def delete_connection(conn: Conn, connection_id: uuid.UUID, *, tenant_id: uuid.UUID) -> bool:
    """Delete the tenant's connection; its secrets, keys, links and queued pushes go with it
    (foreign keys, ON DELETE CASCADE). False when the tenant has no such one."""
    done = await conn.fetchval(
        "DELETE FROM connections WHERE id = $1 AND tenant_id = $2 RETURNING id",
        connection_id,
        tenant_id,
    )
    return done is not None


async def touch(conn: Conn, connection_id: uuid.UUID, *, tenant_id: uuid.UUID) -> None:
    """Mark the connection changed now (its webhook secret rotated, say)."""
    await conn.execute(
        "UPDATE connections SET updated_at = now() WHERE id = $1 AND tenant_id = $2",
        connection_id,
        tenant_id,
    )


async def reauthorise(
    conn: Conn, connection_id: uuid.UUID, ciphertext: str, *, tenant_id: uuid.UUID
) -> bool:
    """An operator's new credentials (encrypted): stored, and a connection waiting for
    re-authorisation is active again. False when the tenant has no such connection."""
    done = await conn.fetchval(
        """
        UPDATE connections
           SET credentials_encrypted = $3, updated_at = now(),
               status = CASE WHEN status = 'needs_reauth' THEN 'active' ELSE status END
         WHERE id = $1 AND tenant_id = $2 RETURNING id
        """,
        connection_id,
        tenant_id,
        ciphertext,
    )
    return done is not None


async def status_and_credentials(
    conn: Conn, connection_id: uuid.UUID, *, tenant_id: uuid.UUID
) -> asyncpg.Record | None:
    """(status, credentials_encrypted) of the tenant's connection, for its health."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT status, credentials_encrypted FROM connections WHERE id = $1 AND tenant_id = $2",
        connection_id,
        tenant_id,
    )
    return row


async def needing_reauth(conn: Conn, tenant_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    """(tenant_id, id, provider, name) of the connections of these tenants whose provider
    refused their credentials (the notifier's ``connection.needs_reauth``)."""
    return await conn.fetch(
        """
        SELECT tenant_id, id, provider, name FROM connections
         WHERE tenant_id = ANY ($1::uuid[]) AND status = 'needs_reauth'
        """,
        tenant_ids,
    )


# -- subscription handshakes (migration 0021) --------------------------------------------

# How long a new connection whose mapping declares a handshake takes them: the operator
# registers the provider's webhooks after adding the connection (FreshBooks: one callback
# per event family, in its API); a day covers that, and `connections await-handshake`
# opens another window (FreshBooks resends a code when asked).
HANDSHAKE_WINDOW = timedelta(hours=24)

# What ingest made of a handshake post: stored for the outbound service to confirm; refused
# because the connection takes none now; refused because it already holds this many
# unconfirmed ones (a flood of unsigned posts must not grow the table).
HandshakeReceipt = Literal["stored", "not_awaited", "too_many"]


@dataclass(frozen=True)
class PendingHandshake:
    """A received handshake claimed for confirming: the code decrypted, never in a repr."""

    id: uuid.UUID
    connection_id: uuid.UUID
    tenant_id: uuid.UUID
    verifier: str = field(repr=False)
    values: dict[str, str]
    attempts: int


async def receive_handshake(
    conn: Conn,
    keyring: KeyRing,
    connection_id: uuid.UUID,
    verifier: str,
    values: dict[str, str],
    *,
    max_pending: int,
) -> HandshakeReceipt:
    """Store a handshake's code (encrypted as a webhook secret is, so a confirmed one moves
    to webhook_secrets as it is) for an active connection that takes handshakes now and
    holds fewer than ``max_pending`` unconfirmed ones. Any tenant's: ingest found the
    connection by the id in the URL the provider posts to, as for any webhook."""
    row = await conn.fetchrow(
        """
        WITH target AS (
            SELECT id, tenant_id FROM connections
             WHERE id = $1 AND status = 'active' AND handshakes_until > now()
        ), waiting AS (
            SELECT count(*) AS n FROM webhook_handshakes
             WHERE connection_id = $1 AND state = 'pending'
        ), stored AS (
            INSERT INTO webhook_handshakes (connection_id, tenant_id, verifier_encrypted,
                                            placeholders)
            SELECT t.id, t.tenant_id, $2, $3 FROM target t, waiting w WHERE w.n < $4
            RETURNING id
        )
        SELECT EXISTS (SELECT 1 FROM target) AS awaited, EXISTS (SELECT 1 FROM stored) AS stored
        """,
        connection_id,
        keyring.encrypt(verifier, secret_context(connection_id)),
        values,
        max_pending,
    )
    assert row is not None  # noqa: S101 - a SELECT of two EXISTS always answers one row
    if row["stored"]:
        return "stored"
    return "too_many" if row["awaited"] else "not_awaited"


async def await_handshakes(
    conn: Conn, connection_id: uuid.UUID, until: datetime, *, tenant_id: uuid.UUID
) -> bool:
    """The tenant's connection takes handshakes until ``until`` (an operator registering
    a provider's webhooks again); False when the tenant has no such connection."""
    return await _set(conn, connection_id, tenant_id, "handshakes_until", until)


async def claim_handshakes(
    conn: Conn | asyncpg.Pool, keyring: KeyRing, *, limit: int, lease_seconds: float
) -> list[PendingHandshake]:
    """Up to ``limit`` handshakes due for confirming, any tenant's (the outbound service
    confirms them all), each leased: not claimed again for ``lease_seconds`` unless
    settled. A code that does not decrypt (a key gone from the ring) fails its row."""
    rows = await conn.fetch(
        """
        UPDATE webhook_handshakes h
           SET attempts = h.attempts + 1,
               next_attempt_at = now() + make_interval(secs => $2)
         WHERE h.id IN (SELECT id FROM webhook_handshakes
                         WHERE state = 'pending' AND next_attempt_at <= now()
                         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING h.id, h.connection_id, h.tenant_id, h.verifier_encrypted, h.placeholders,
                  h.attempts
        """,
        limit,
        lease_seconds,
    )
    claimed = []
    for r in rows:
        try:
            verifier = keyring.decrypt(r["verifier_encrypted"], secret_context(r["connection_id"]))
        except CryptoError as exc:
            await settle_handshake(conn, r["id"], "failed", error=f"code does not decrypt: {exc}")
            continue
        claimed.append(
            PendingHandshake(
                id=r["id"],
                connection_id=r["connection_id"],
                tenant_id=r["tenant_id"],
                verifier=verifier,
                values=r["placeholders"],
                attempts=r["attempts"],
            )
        )
    return claimed


async def confirm_handshake(conn: Conn, handshake_id: uuid.UUID) -> None:
    """The provider accepted the handshake's code: it is one more current webhook secret of
    its connection (the ciphertext moves as it is), and the connection is marked changed so
    every ingest reloads it. One transaction."""
    async with conn.transaction():
        connection_id = await conn.fetchval(
            """
            UPDATE webhook_handshakes SET state = 'confirmed', settled_at = now(),
                   last_error = NULL
             WHERE id = $1 AND state = 'pending' RETURNING connection_id
            """,
            handshake_id,
        )
        if connection_id is None:
            return  # settled meanwhile (a lease that ran out, taken by another worker)
        await conn.execute(
            """
            INSERT INTO webhook_secrets (connection_id, secret_encrypted)
            SELECT connection_id, verifier_encrypted FROM webhook_handshakes WHERE id = $1
            """,
            handshake_id,
        )
        await conn.execute("UPDATE connections SET updated_at = now() WHERE id = $1", connection_id)


async def settle_handshake(
    conn: Conn | asyncpg.Pool,
    handshake_id: uuid.UUID,
    state: Literal["refused", "failed"],
    *,
    error: str,
) -> None:
    """The handshake is done without a secret: the provider refused its code, or the tries
    ran out. ``error`` says why, for the operator (never the code)."""
    await conn.execute(
        """
        UPDATE webhook_handshakes SET state = $2, settled_at = now(), last_error = $3
         WHERE id = $1 AND state = 'pending'
        """,
        handshake_id,
        state,
        error,
    )


async def retry_handshake(
    conn: Conn | asyncpg.Pool, handshake_id: uuid.UUID, *, after_seconds: float, error: str
) -> None:
    """Try the handshake again in ``after_seconds`` (the provider was unreachable or busy)."""
    await conn.execute(
        """
        UPDATE webhook_handshakes
           SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
         WHERE id = $1 AND state = 'pending'
        """,
        handshake_id,
        after_seconds,
        error,
    )
