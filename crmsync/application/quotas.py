"""The tenant's quotas (issue 20): show the limits with their usage, set them.

What each quota limits, and where it is enforced, is ``crmsync.common.quotas``'s (README
"Quotas"). Usage of events per minute is every ingest process's count as last written (a
few seconds behind at most).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import InvalidError
from crmsync.application.models import (
    EventsQuotaState,
    QuotaLimits,
    QuotaLimitsSet,
    QuotasOut,
    QuotaState,
)
from crmsync.common import quotas
from crmsync.common.db import Conn

_FIELDS: dict[str, quotas.QuotaName] = {
    "max_connections": "connections",
    "events_per_minute": "events_per_minute",
    "max_records": "records",
}


async def get(conn: Conn, ctx: Context, *, now: datetime) -> QuotasOut:
    limits, updated_at, updated_by = await quotas.limits_of(conn, ctx.tenant_id)
    start = datetime.fromtimestamp(quotas.window_start(now.timestamp()), now.tzinfo)
    this = await quotas.usage_in(conn, ctx.tenant_id, start)
    last = await quotas.usage_in(
        conn, ctx.tenant_id, start - timedelta(seconds=quotas.WINDOW_SECONDS)
    )
    connections = await quotas.connection_counts(conn, [ctx.tenant_id])
    records = await quotas.record_counts(conn, [ctx.tenant_id])
    return QuotasOut(
        connections=QuotaState(
            limit=limits.max_connections, usage=connections.get(ctx.tenant_id, 0)
        ),
        events_per_minute=EventsQuotaState(
            limit=limits.events_per_minute,
            usage=this.events,
            window_start=start,
            accepted_over_limit=this.accepted_over,
            refused=this.refused,
            last_minute=last.events,
        ),
        records=QuotaState(limit=limits.max_records, usage=records.get(ctx.tenant_id, 0)),
        updated_at=updated_at,
        updated_by=updated_by,
    )


@audited("quota.replace")
async def replace(conn: Conn, ctx: Context, body: QuotaLimitsSet, *, now: datetime) -> QuotasOut:
    """Set every limit (null: no limit)."""
    changes = {_FIELDS[f]: getattr(body, f) for f in _FIELDS}
    await quotas.set_limits(conn, ctx.tenant_id, changes, actor=ctx.actor)
    return await get(conn, ctx, now=now)


@audited("quota.update")
async def update(conn: Conn, ctx: Context, body: QuotaLimits, *, now: datetime) -> QuotasOut:
    """Set the limits given (null: no limit); the others stay."""
    if not body.model_fields_set:
        raise InvalidError(
            "nothing to change", loc="/body", msg="give at least one limit", type_="missing"
        )
    changes = {_FIELDS[f]: getattr(body, f) for f in body.model_fields_set}
    await quotas.set_limits(conn, ctx.tenant_id, changes, actor=ctx.actor)
    return await get(conn, ctx, now=now)
