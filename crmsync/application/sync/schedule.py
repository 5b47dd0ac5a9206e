"""Scheduled reconciliation: which connections are due, and their runs queued.

Every connection with an API is polled for records modified since its last successful
run (minus an overlap that absorbs clock skew between us and the provider), and compared
in full once in a while to find records deleted at the provider. Per connection,
settings ``reconcile_interval_seconds`` and ``full_reconcile_interval_seconds`` override
the service defaults; 0 turns that kind of run off for the connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from connectors.runtime import ConnectionInfo
from crmsync.application.sync import jobs
from crmsync.application.sync.jobs import Kind
from crmsync.application.sync.runner import SyncFailedError, runnable_types
from crmsync.common.connections import reconcile_candidates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcilePolicy:
    interval_seconds: float = 900.0
    full_interval_seconds: float = 86_400.0
    overlap_seconds: float = 300.0


def _interval(info: ConnectionInfo, key: str, default: float) -> float:
    value = info.settings.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return default


def poll_default(info: ConnectionInfo, policy: ReconcilePolicy) -> float:
    """The incremental run's default interval: a provider without webhooks is kept in
    sync by it (ApiSpec.poll_seconds, MYOB's minute); for the others it is the backstop
    for lost webhooks (the service's interval)."""
    try:
        api = info.connector().api
    except (KeyError, ValueError):
        return policy.interval_seconds
    if api is not None and api.poll_seconds is not None:
        return api.poll_seconds
    return policy.interval_seconds


def due_run(
    info: ConnectionInfo,
    *,
    created_at: datetime,
    last_reconciled_at: datetime | None,
    last_full_at: datetime | None,
    now: datetime,
    policy: ReconcilePolicy,
    last_tried_at: datetime | None = None,
    last_full_tried_at: datetime | None = None,
) -> tuple[Kind, datetime | None] | None:
    """The run this connection is due for (kind, modified-since), if any.

    Intervals count from the connection's creation: connecting a CRM does not list all of
    it by surprise (that is what ``crmsync backfill`` is for). They also count from the
    last run queued, failed ones included (``last_tried_at``): a connection whose listing
    fails is retried once an interval, not every scheduler tick. A poll still starts from
    the last *successful* run, so a failure never skips a window."""
    full = _interval(info, "full_reconcile_interval_seconds", policy.full_interval_seconds)
    full_base = max(last_full_at or created_at, last_full_tried_at or created_at)
    if full > 0 and now - full_base >= timedelta(seconds=full):
        return "full_reconcile", None
    every = _interval(info, "reconcile_interval_seconds", poll_default(info, policy))
    since = last_reconciled_at or created_at
    if every > 0 and now - max(since, last_tried_at or since) >= timedelta(seconds=every):
        return "reconcile", since - timedelta(seconds=policy.overlap_seconds)
    return None


async def schedule_due(pool: asyncpg.Pool, policy: ReconcilePolicy) -> int:
    """Queue a pending run for every connection that is due; return how many were queued.
    A connection with a run of that kind already pending or running gets no second one."""
    rows = await reconcile_candidates(pool)
    queued = 0
    for row in rows:
        info = ConnectionInfo.from_row(row)
        due = due_run(
            info,
            created_at=row["created_at"],
            last_reconciled_at=row["last_reconciled_at"],
            last_full_at=row["last_full_reconcile_at"],
            now=row["now"],
            policy=policy,
            last_tried_at=row["last_tried_at"],
            last_full_tried_at=row["last_full_tried_at"],
        )
        if due is None:
            continue
        try:
            types = runnable_types(info, None)
        except (SyncFailedError, KeyError, ValueError):
            continue  # nothing to list (webhook-only provider, outbound-only connection)
        kind, since = due
        _, inserted = await jobs.queue(
            pool,
            tenant_id=info.tenant_id,
            connection_id=info.id,
            kind=kind,
            entity_types=types,
            modified_since=since,
            requested_by="schedule",
        )
        if inserted:
            queued += 1
            log.info(
                "queued %s of %s",
                kind,
                info.name,
                extra={"connection": str(info.id), "provider": info.provider},
            )
    return queued
