"""Connections and their secrets in Postgres: the one data-access module for them.

Ingest reads (every active connection with its current secrets, and publish keys);
the CLI and the admin API write. Secrets are decrypted only in memory of the reader.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
) -> CreatedConnection:
    """Create the tenant if new, the connection, its first webhook secret or publish key."""
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
            INSERT INTO connections (tenant_id, provider, name, base_url, settings)
            VALUES ($1, $2, $3, $4, $5) RETURNING id
            """,
            tenant_id,
            provider,
            name,
            base_url,
            settings or {},
        )
        if api_credentials is not None:
            await conn.execute(
                "UPDATE connections SET credentials_encrypted = $2 WHERE id = $1",
                connection_id,
                keyring.encrypt(api_credentials, f"credentials:{connection_id}"),
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
        connection_id, tenant_id, tenant, provider, name, webhook_secret, api_key
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
