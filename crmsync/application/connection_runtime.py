"""The connector runtime wired to our tables: a connection read as connectors'
``ConnectionInfo``, and the credential store ``connectors.runtime.Clients`` writes to.

Connectors hold no database code (they sit below crmsync); the services, the sync runs,
the CLI and the demo read connections and build their ``Clients`` through here.
"""

from __future__ import annotations

import uuid

import aiohttp
import asyncpg

from connectors.limits import PROBE_LEASE_SECONDS, BreakerPolicy
from connectors.runtime import Clients, ConnectionInfo, CredentialCipher
from crmsync.application.budgets import PostgresBudgets
from crmsync.common import connections as stored
from crmsync.common.db import Conn


async def load_connection(
    conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, *, tenant_id: uuid.UUID | None
) -> ConnectionInfo | None:
    """The connection, when it is ``tenant_id``'s (None: any tenant's; see
    crmsync.common.connections.connection_row for when that is right)."""
    row = await stored.connection_row(conn, connection_id, tenant_id=tenant_id)
    return ConnectionInfo.from_row(row) if row else None


async def tenant_connections(
    conn: Conn | asyncpg.Pool, tenant_id: uuid.UUID
) -> list[ConnectionInfo]:
    return [
        ConnectionInfo.from_row(r) for r in await stored.tenant_connection_rows(conn, tenant_id)
    ]


class StoredCredentials:
    """``connectors.runtime.CredentialStore`` on the connections table: through a pool, or
    one connection its caller uses for nothing else meanwhile (an admin operation's)."""

    def __init__(self, pool: Conn | asyncpg.Pool) -> None:
        self.pool = pool

    async def save_credentials(self, info: ConnectionInfo, ciphertext: str) -> None:
        await stored.save_credentials(self.pool, info.id, ciphertext, tenant_id=info.tenant_id)

    async def mark_needs_reauth(self, info: ConnectionInfo) -> None:
        await stored.mark_needs_reauth(self.pool, info.id, tenant_id=info.tenant_id)


def stored_clients(
    pool: asyncpg.Pool,
    keyring: CredentialCipher,
    session: aiohttp.ClientSession,
    *,
    breaker_policy: BreakerPolicy | None = None,
) -> Clients:
    """Clients whose refreshed tokens and refused refreshes are saved in ``pool``, and
    whose rate limits and circuit breakers are every process's (``provider_budgets``)."""
    return Clients(
        StoredCredentials(pool),
        keyring,
        session,
        breaker_policy=breaker_policy,
        budgets=PostgresBudgets(pool, probe_seconds=PROBE_LEASE_SECONDS),
    )
