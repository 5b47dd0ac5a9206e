"""The ingest's in-memory view of connections, secrets and publish keys.

Verification must not cost a database round trip per webhook, and must keep working for
a while when Postgres blips, so ingest serves from a cache reloaded every few seconds. A
miss (a connection or key created a moment ago, a secret just rotated) waits for a reload
that started after the request arrived. Reloads are single-flight and at least
MIN_RELOAD_INTERVAL_SECONDS apart, so a flood of bogus ids cannot hammer Postgres.

What a webhook needs beyond the row (its connector, its record key) is derived once per
connection and load (``endpoint``), not per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from connectors.base import Connector
from connectors.generic import GenericSchemeConfig
from connectors.registry import connector
from crmsync.common.apikeys import LastUsedRecorder
from crmsync.common.connections import ActiveConnection, PublishKey, load_active
from crmsync.common.crypto import CryptoError, KeyRing
from services.ingest import metrics

log = logging.getLogger(__name__)

# Five reloads a second at most: a new connection is found within 200 ms, and a flood of
# unknown ids costs Postgres one small query per 200 ms.
MIN_RELOAD_INTERVAL_SECONDS = 0.2


@dataclass(frozen=True)
class Endpoint:
    """A connection as the webhook path uses it, derived once per loaded connection."""

    connection: ActiveConnection
    connector: Connector
    # webhooks.raw is keyed by connection: one connection's events keep their order.
    record_key: bytes
    # For log fields: str() of a UUID is not free, and every log line carries them.
    connection_text: str
    tenant_text: str


def _endpoint(conn: ActiveConnection) -> Endpoint:
    generic = conn.settings.get("generic")
    config = GenericSchemeConfig.model_validate(generic) if generic is not None else None
    text = str(conn.id)
    return Endpoint(
        connection=conn,
        connector=connector(conn.provider, config),
        record_key=text.encode(),
        connection_text=text,
        tenant_text=str(conn.tenant_id),
    )


class ConnectionCache:
    def __init__(
        self,
        pool: asyncpg.Pool,
        keyring: KeyRing,
        *,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._keyring = keyring
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = asyncio.Lock()
        self._connections: dict[uuid.UUID, ActiveConnection] = {}
        # The same connections by the canonical text of their id, as webhook URLs carry it.
        self._by_text: dict[str, ActiveConnection] = {}
        # Filled as connections are used; emptied with each load (settings may have changed).
        self._endpoints: dict[uuid.UUID, Endpoint] = {}
        self._publish: dict[str, PublishKey] = {}
        self._last_started: float | None = None
        self.loaded_at: float | None = None
        # Publish keys' last-used times, written with each periodic reload: no write per request.
        self.last_used = LastUsedRecorder(pool)

    @property
    def loaded(self) -> bool:
        return self.loaded_at is not None

    def now(self) -> float:
        return self._clock()

    async def refresh(self, since: float | None = None) -> bool:
        """Make sure a load that started at or after ``since`` has finished.

        Returns True when such a load succeeded (now or by a concurrent caller); failures
        keep the last good copy, are logged, and return False.
        """
        async with self._lock:
            done = self._last_started
            if since is not None and done is not None and done >= since and self.loaded:
                # A load that began after the caller's request arrived has finished.
                return self.loaded_at == done
            if self._last_started is not None:
                wait = self._last_started + MIN_RELOAD_INTERVAL_SECONDS - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
            self._last_started = self._clock()
            try:
                async with self._pool.acquire() as conn:
                    connections, publish = await load_active(conn, self._keyring)
            except (OSError, asyncpg.PostgresError, CryptoError, TimeoutError) as exc:
                log.warning("connection cache reload failed, serving the last good copy: %s", exc)
                return False
            self._connections, self._publish = connections, publish
            self._by_text = {str(c.id): c for c in connections.values()}
            self._endpoints = {}
            self.loaded_at = self._last_started
        metrics.CONNECTIONS_LOADED.set(len(connections))
        return True

    def connection(self, connection_id: uuid.UUID) -> ActiveConnection | None:
        return self._connections.get(connection_id)

    def connection_by_text(self, text: str) -> ActiveConnection | None:
        """The connection whose id's canonical form (lower-case, hyphenated) is ``text``.

        Other spellings of a UUID miss here; the caller parses those and uses
        ``connection``, which finds the same connection.
        """
        return self._by_text.get(text)

    def endpoint(self, conn: ActiveConnection) -> Endpoint:
        """``conn``'s connector and record key, computed on first use after each load.

        A connection from an earlier load (a request that began before a reload) gets its
        own, never the newer copy's, so a request verifies against one consistent view.
        Settings that make no connector raise, on every request, as they always did.
        """
        found = self._endpoints.get(conn.id)
        if found is not None and found.connection is conn:
            return found
        made = _endpoint(conn)
        if self._connections.get(conn.id) is conn:
            self._endpoints[conn.id] = made
        return made

    def publish_key(self, key_hash: str) -> PublishKey | None:
        return self._publish.get(key_hash)

    async def run(self) -> None:
        """Reload periodically for ever; failures keep the last good copy and are logged."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()
            await self.last_used.flush()
            if self.loaded_at is not None:
                metrics.CACHE_AGE.set(self._clock() - self.loaded_at)
