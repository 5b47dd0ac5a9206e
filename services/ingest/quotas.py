"""Ingest's side of the tenants' quotas: the rate of change events per minute, and whether
a tenant's records are at their limit (crmsync.common.quotas says what each quota means).

Nothing here costs a request a database round trip: admissions are decided by the
in-memory :class:`RateMeter`, and every ``sync_seconds`` one task writes what this process
counted, reads back every process's totals of the current minute and the tenants' limits,
and (less often) their record and connection counts. Only an internal change to a tenant
whose records are at their limit reads the database, to tell a create from an update.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence

import asyncpg

from crmsync.common import links, quotas
from crmsync.common.quotas import RateMeter
from schemas.changes import ChangeEvent
from services.ingest import metrics

log = logging.getLogger(__name__)

# Record and connection counts scan the tenants' record indexes: every 15 s keeps that
# cost small, and a records quota is a capacity limit, not a rate: a few seconds late
# admits a few more records, never loses any.
COUNTS_REFRESH_SECONDS = 15.0


class QuotaKeeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        sync_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._sync_seconds = sync_seconds
        self.clock = clock
        self.meter = RateMeter()
        self.records: dict[uuid.UUID, int] = {}
        self.connections: dict[uuid.UUID, int] = {}
        self._counted_at: float | None = None
        self._lock = asyncio.Lock()

    def now(self) -> float:
        return self.clock()

    def records_full(self, tenant_id: uuid.UUID) -> tuple[int, int] | None:
        """(limit, records) when the tenant's records were at their limit at the last count."""
        limit = self.meter.limits.get(tenant_id, quotas.Limits()).max_records
        if limit is None:
            return None
        used = self.records.get(tenant_id, 0)
        return (limit, used) if used >= limit else None

    async def new_records(
        self, connection_id: uuid.UUID, changes: Sequence[ChangeEvent]
    ) -> list[int]:
        """The positions of the upserts that name a record the connection has no link to:
        the ones that would create a record. One lookup for the batch."""
        keys = [(connection_id, c.entity_type, c.external_id) for c in changes]
        linked = await links.entity_ids(
            self._pool, [k for k, c in zip(keys, changes, strict=True) if c.op == "upsert"]
        )
        return [i for i, c in enumerate(changes) if c.op == "upsert" and keys[i] not in linked]

    async def sync(self) -> bool:
        """Write this process's counts, read every process's totals and the limits."""
        async with self._lock:
            now = self.clock()
            pending = self.meter.take_pending()
            try:
                async with self._pool.acquire() as conn:
                    if pending:
                        await quotas.add_usage(conn, pending, now=now)
                    start = quotas.window_start(self.clock())
                    totals = await quotas.window_totals(conn, start)
                    limits = await quotas.all_limits(conn)
                    # Counted again when due, and at once when a limit changed.
                    due = (
                        self._counted_at is None or now - self._counted_at >= COUNTS_REFRESH_SECONDS
                    )
                    if due or limits != self.meter.limits:
                        self.records = await quotas.record_counts(conn, limits)
                        self.connections = await quotas.connection_counts(conn, limits)
                        self._counted_at = now
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.meter.restore(pending)
                log.warning("quota usage not synced, counting on in memory: %s", exc)
                return False
            self.meter.limits = limits
            self.meter.observe_totals(start, totals)
        self._export(start)
        return True

    def _export(self, start: float) -> None:
        usage = {
            "connections": self.connections,
            "records": self.records,
            "events_per_minute": {t: self.meter.used(t, start) for t in self.meter.limits},
        }
        for quota in quotas.QUOTA_NAMES:
            at_limit = 0
            highest = 0.0
            for tenant_id, limits in self.meter.limits.items():
                limit = limits.of(quota)
                if limit is None:
                    continue
                used = usage[quota].get(tenant_id, 0)
                at_limit += used >= limit
                highest = max(highest, used / limit if limit else float(used > 0))
            metrics.QUOTA_TENANTS_AT_LIMIT.labels(quota).set(at_limit)
            metrics.QUOTA_HIGHEST_USAGE_RATIO.labels(quota).set(highest)

    async def run(self) -> None:
        """Sync every interval until cancelled (the owner syncs once more on stop)."""
        while True:
            await asyncio.sleep(self._sync_seconds)
            await self.sync()
