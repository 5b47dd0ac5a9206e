"""The push queue's routing: which connections a change goes to.

A records.changed event becomes one push_jobs row per target connection, written before
the Kafka offset is committed: a crash after the commit finds the rows, a crash before
it re-reads the event and the upsert changes nothing. The rows themselves (queue, claim,
finish, reschedule) are read and written in crmsync.common.pushes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from connectors.runtime import ConnectionInfo
from crmsync.application.connection_runtime import tenant_connections
from crmsync.common.db import Conn
from crmsync.common.pushes import Push, queue_pushes
from schemas.records import CanonicalRecord

# Connection rows are re-read after this long: settings changes apply within seconds.
CONNECTIONS_TTL_SECONDS = 5.0


def pushes_to(info: ConnectionInfo, entity_type: str) -> bool:
    """Whether ``info`` receives ``entity_type`` changes (settings: direction, entity_types)."""
    return info.syncs("out", entity_type)


class Router:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: dict[uuid.UUID, tuple[float, list[ConnectionInfo]]] = {}

    async def connections(self, tenant_id: uuid.UUID) -> list[ConnectionInfo]:
        cached = self._cache.get(tenant_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CONNECTIONS_TTL_SECONDS:
            return cached[1]
        infos = await tenant_connections(self.pool, tenant_id)
        self._cache[tenant_id] = (now, infos)
        return infos

    async def targets(self, record: CanonicalRecord) -> list[ConnectionInfo]:
        """Every connection the change goes to: never the one it came from."""
        return [
            info
            for info in await self.connections(record.tenant_id)
            if info.id != record.origin_connection_id and pushes_to(info, record.entity_type)
        ]


# tenant, connection, entity type, entity id, version, change id, committed at
PushRow = tuple[uuid.UUID, uuid.UUID, str, uuid.UUID, int, uuid.UUID, datetime]


def push_rows(record: CanonicalRecord, targets: Sequence[ConnectionInfo]) -> list[PushRow]:
    """The pushes one change makes: a row for ``enqueue`` per target connection."""
    return [
        (
            record.tenant_id,
            t.id,
            record.entity_type,
            record.entity_id,
            record.version,
            record.change_id,
            record.committed_at,
        )
        for t in targets
    ]


async def enqueue(
    conn: Conn | asyncpg.Pool,
    rows: Sequence[PushRow],
) -> None:
    """Queue pushes (tenant, connection, entity type, entity id, version, change id,
    committed at). An older version never lowers a pending row; backoff is kept."""
    await queue_pushes(conn, [Push(*row) for row in rows])
