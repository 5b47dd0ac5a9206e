"""The ingest's in-memory view of connections, secrets and publish keys.

Verification must not cost a database round trip per webhook, and must keep working for
a while when Postgres blips, so ingest serves from a cache reloaded every few seconds. A
miss (a connection or key created a moment ago, a secret just rotated) waits for a reload
that started after the request arrived. Reloads are single-flight and at least
MIN_RELOAD_INTERVAL_SECONDS apart, so a flood of bogus ids cannot hammer Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable

import asyncpg

from crmsync.common.apikeys import LastUsedRecorder
from crmsync.common.connections import ActiveConnection, PublishKey, load_active
from crmsync.common.crypto import CryptoError, KeyRing
from services.ingest import metrics

log = logging.getLogger(__name__)

# Five reloads a second at most: a new connection is found within 200 ms, and a flood of
# unknown ids costs Postgres one small query per 200 ms.
MIN_RELOAD_INTERVAL_SECONDS = 0.2


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
            self.loaded_at = self._last_started
        metrics.CONNECTIONS_LOADED.set(len(connections))
        return True

    def connection(self, connection_id: uuid.UUID) -> ActiveConnection | None:
        return self._connections.get(connection_id)

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
