"""Quotas per tenant (issue 20): the one data-access module of ``tenant_quotas`` and
``quota_usage``, and the rate meter ingest counts events with.

Three limits, each NULL for none (infra/migrations/0019_quotas.sql):

- ``max_connections``: one more connection is refused (:class:`QuotaExceededError`,
  409 in the API): the tenant's state, not the request, is what stands in the way.
- ``events_per_minute``: change events ingested per calendar minute (UTC), from providers'
  webhooks and the internal API alike. The internal API answers 429 past it; webhooks are
  never refused (a provider would retry for days, or drop them): they are accepted,
  counted as over, and the tenant is notified (``quota.reached``).
- ``max_records``: canonical records not deleted. Internal changes that would create one
  more are refused (409); provider records are applied, and the tenant is notified.

Ingest must not pay a database round trip per request for this, so it counts in memory
(:class:`RateMeter`) and every few seconds adds its counts to ``quota_usage`` and reads
back every process's total for the current minute. With several ingest processes a
tenant's limit is enforced on: the other processes' events as of the last sync plus this
process's own up to now, so it can be overshot by what the other processes admit within
one sync interval.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

from crmsync.common import connections
from crmsync.common.canonical import TABLES
from crmsync.common.db import Conn
from schemas.errors import RefuseInput

QuotaName = Literal["connections", "events_per_minute", "records"]
QUOTA_NAMES: tuple[QuotaName, ...] = ("connections", "events_per_minute", "records")
# The column of each quota's limit.
LIMIT_COLUMNS: dict[QuotaName, str] = {
    "connections": "max_connections",
    "events_per_minute": "events_per_minute",
    "records": "max_records",
}
WINDOW_SECONDS = 60
# How long per-minute usage is kept: the API shows the current and the last minute, the
# notifier looks one minute back; a day leaves room to look at an incident afterwards.
USAGE_KEPT = timedelta(days=1)
# The notifier's subject of a quota's condition (one episode per tenant and quota).
_SUBJECT_NAMESPACE = uuid.UUID("6f6e0c1e-2b53-4b4e-9a43-71756f746173")


def subject(quota: QuotaName) -> uuid.UUID:
    return uuid.uuid5(_SUBJECT_NAMESPACE, quota)


@dataclass(frozen=True)
class Limits:
    max_connections: int | None = None
    events_per_minute: int | None = None
    max_records: int | None = None

    def of(self, quota: QuotaName) -> int | None:
        value: int | None = getattr(self, LIMIT_COLUMNS[quota])
        return value


class QuotaExceededError(RefuseInput):
    """An operation would take the tenant past one of its limits."""

    def __init__(self, quota: QuotaName, limit: int, usage: int, detail: str) -> None:
        super().__init__(detail)
        self.quota: QuotaName = quota
        self.limit = limit
        self.usage = usage


def window_start(now: float) -> float:
    """The start (unix seconds) of the calendar minute ``now`` falls in."""
    return now - now % WINDOW_SECONDS


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _limits(row: asyncpg.Record | None) -> Limits:
    if row is None:
        return Limits()
    return Limits(row["max_connections"], row["events_per_minute"], row["max_records"])


# -- limits ------------------------------------------------------------------------------


async def limits_of(conn: Conn, tenant_id: uuid.UUID) -> tuple[Limits, datetime | None, str | None]:
    """The tenant's limits, and when and by whom they were last set (None: never)."""
    row = await conn.fetchrow(
        """
        SELECT max_connections, events_per_minute, max_records, updated_at, updated_by
          FROM tenant_quotas WHERE tenant_id = $1
        """,
        tenant_id,
    )
    if row is None:
        return Limits(), None, None
    return _limits(row), row["updated_at"], row["updated_by"]


async def all_limits(conn: Conn | asyncpg.Pool) -> dict[uuid.UUID, Limits]:
    """Every tenant's limits (any tenant's: ingest enforces them all)."""
    rows = await conn.fetch(
        "SELECT tenant_id, max_connections, events_per_minute, max_records FROM tenant_quotas"
    )
    return {r["tenant_id"]: _limits(r) for r in rows}


async def set_limits(
    conn: Conn, tenant_id: uuid.UUID, changes: Mapping[QuotaName, int | None], *, actor: str
) -> Limits:
    """Set the named limits (None: no limit); the others keep their values, decided in the
    one statement so two concurrent changes of different limits both stay."""
    given = [q in changes for q in QUOTA_NAMES]
    values = [changes.get(q) for q in QUOTA_NAMES]
    row = await conn.fetchrow(
        """
        INSERT INTO tenant_quotas AS q
               (tenant_id, max_connections, events_per_minute, max_records, updated_by)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (tenant_id) DO UPDATE
           SET max_connections = CASE WHEN $6 THEN excluded.max_connections
                                      ELSE q.max_connections END,
               events_per_minute = CASE WHEN $7 THEN excluded.events_per_minute
                                        ELSE q.events_per_minute END,
               max_records = CASE WHEN $8 THEN excluded.max_records ELSE q.max_records END,
               updated_at = now(), updated_by = excluded.updated_by
        RETURNING max_connections, events_per_minute, max_records
        """,
        tenant_id,
        *values,
        actor,
        *given,
    )
    return _limits(row)


# -- what counts against them ------------------------------------------------------------


async def connection_counts(
    conn: Conn | asyncpg.Pool, tenant_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Connections per tenant, whatever their status: a disabled one still holds its place."""
    return await connections.counts_by_tenant(conn, list(tenant_ids))


async def record_counts(
    conn: Conn | asyncpg.Pool, tenant_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Canonical records not deleted, per tenant, over every record table."""
    ids = list(tenant_ids)
    if not ids:
        return {}
    union = " UNION ALL ".join(
        f"SELECT tenant_id FROM {t} WHERE tenant_id = ANY ($1::uuid[]) AND deleted_at IS NULL"  # noqa: S608 - table names are constants
        for t in sorted(set(TABLES.values()))
    )
    rows = await conn.fetch(
        f"SELECT tenant_id, count(*) AS n FROM ({union}) r GROUP BY tenant_id",  # noqa: S608
        ids,
    )
    return {r["tenant_id"]: r["n"] for r in rows}


async def check_connection_room(conn: Conn, tenant_id: uuid.UUID) -> None:
    """Raise :class:`QuotaExceededError` when the tenant has no room for one more
    connection. Call it in the creating transaction: the tenant's quota row is locked
    until it ends, so two concurrent creates cannot both take the last place."""
    limit = await conn.fetchval(
        "SELECT max_connections FROM tenant_quotas WHERE tenant_id = $1 FOR UPDATE", tenant_id
    )
    if limit is None:
        return
    used = (await connection_counts(conn, [tenant_id])).get(tenant_id, 0)
    if used >= limit:
        raise QuotaExceededError(
            "connections",
            limit,
            used,
            f"the tenant has {used} connections and its quota allows {limit}: delete one, "
            "or raise max_connections",
        )


# -- per-minute usage --------------------------------------------------------------------


@dataclass(frozen=True)
class WindowUsage:
    events: int = 0
    accepted_over: int = 0
    refused: int = 0


async def add_usage(
    conn: Conn, counts: Mapping[tuple[uuid.UUID, float], WindowUsage], *, now: float
) -> None:
    """Add counts per (tenant, window start) in one statement; forget day-old windows."""
    keys = list(counts)
    await conn.execute(
        """
        INSERT INTO quota_usage AS u (tenant_id, window_start, events, accepted_over, refused)
        SELECT c.t, c.w, c.e, c.a, c.r
          FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[])
               AS c(t, w, e, a, r)
          JOIN tenants ON tenants.id = c.t
        ON CONFLICT (tenant_id, window_start) DO UPDATE
           SET events = u.events + excluded.events,
               accepted_over = u.accepted_over + excluded.accepted_over,
               refused = u.refused + excluded.refused
        """,
        [t for t, _ in keys],
        [_at(w) for _, w in keys],
        [counts[k].events for k in keys],
        [counts[k].accepted_over for k in keys],
        [counts[k].refused for k in keys],
    )
    await conn.execute("DELETE FROM quota_usage WHERE window_start < $1", _at(now) - USAGE_KEPT)


async def window_totals(conn: Conn, start: float) -> dict[uuid.UUID, int]:
    """Events per tenant in the window starting at ``start``, every process's."""
    rows = await conn.fetch(
        "SELECT tenant_id, events FROM quota_usage WHERE window_start = $1", _at(start)
    )
    return {r["tenant_id"]: r["events"] for r in rows}


async def usage_in(conn: Conn, tenant_id: uuid.UUID, start: datetime) -> WindowUsage:
    row = await conn.fetchrow(
        """
        SELECT events, accepted_over, refused FROM quota_usage
         WHERE tenant_id = $1 AND window_start = $2
        """,
        tenant_id,
        start,
    )
    return WindowUsage(**dict(row)) if row is not None else WindowUsage()


async def reached(
    conn: Conn, tenant_ids: list[uuid.UUID], now: datetime
) -> list[tuple[uuid.UUID, QuotaName, dict[str, Any]]]:
    """The quotas each of these tenants has reached now: records or connections at their
    limit, or events past the rate in this minute or the last. The notifier announces each
    once while it holds (``quota.reached``)."""
    if not tenant_ids:
        return []
    limits = {
        r["tenant_id"]: _limits(r)
        for r in await conn.fetch(
            """
            SELECT tenant_id, max_connections, events_per_minute, max_records
              FROM tenant_quotas WHERE tenant_id = ANY ($1::uuid[])
            """,
            tenant_ids,
        )
    }
    found: list[tuple[uuid.UUID, QuotaName, dict[str, Any]]] = []
    since = _at(window_start(now.timestamp()) - WINDOW_SECONDS)
    for r in await conn.fetch(
        """
        SELECT tenant_id, max(window_start) AS window_start, sum(events)::bigint AS events,
               sum(accepted_over)::bigint AS accepted_over, sum(refused)::bigint AS refused
          FROM quota_usage
         WHERE tenant_id = ANY ($1::uuid[]) AND window_start >= $2
           AND accepted_over + refused > 0
         GROUP BY tenant_id
        """,
        tenant_ids,
        since,
    ):
        limit = limits.get(r["tenant_id"], Limits()).events_per_minute
        found.append(
            (
                r["tenant_id"],
                "events_per_minute",
                {
                    "quota": "events_per_minute",
                    "limit": limit,
                    "window_start": r["window_start"].isoformat(),
                    "accepted_over_limit": r["accepted_over"],
                    "refused": r["refused"],
                },
            )
        )
    counted: dict[QuotaName, dict[uuid.UUID, int]] = {
        "records": await record_counts(
            conn, [t for t, lim in limits.items() if lim.max_records is not None]
        ),
        "connections": await connection_counts(
            conn, [t for t, lim in limits.items() if lim.max_connections is not None]
        ),
    }
    for quota, counts in counted.items():
        for tenant_id, used in counts.items():
            limit = limits[tenant_id].of(quota)
            if limit is not None and used >= limit:
                found.append((tenant_id, quota, {"quota": quota, "limit": limit, "usage": used}))
    return found


# -- the rate meter (pure: time passed in) -----------------------------------------------


@dataclass(frozen=True)
class Admission:
    admitted: bool
    # Events of this call beyond the tenant's rate (admitted anyway when not refusable).
    over: int = 0
    # Whole seconds until the window ends: the Retry-After of a refusal.
    retry_after: int = 0
    limit: int | None = None


# The answer to nearly every call, made once: admitting is on every request's path.
ADMITTED = Admission(True)


@dataclass(eq=False)
class _Window:
    start: float
    end: float
    # Events this process admitted in the window; of them, how many were written already.
    local: int = 0
    flushed: int = 0
    # Every other process's events in the window, as of the last sync.
    others: int = 0
    # Counted since the last write.
    events: int = 0
    accepted_over: int = 0
    refused: int = 0


class RateMeter:
    """Counts events per tenant and calendar minute; decides admissions in memory.

    An admission is a dict lookup and a few additions: about 2 µs measured with timeit on
    the shared 2-core development machine (time.time() included), against a webhook's
    ~300 µs of ingest CPU at the bench's ~3,300/s. No allocation unless over the rate.
    """

    def __init__(self, limits: Mapping[uuid.UUID, Limits] | None = None) -> None:
        self._limits: dict[uuid.UUID, Limits] = dict(limits or {})
        self._rates = self._rates_of(self._limits)
        self._windows: dict[uuid.UUID, _Window] = {}
        # Windows that ended with counts not written yet.
        self._ended: list[tuple[uuid.UUID, _Window]] = []

    @staticmethod
    def _rates_of(limits: Mapping[uuid.UUID, Limits]) -> dict[uuid.UUID, int]:
        return {
            t: lim.events_per_minute
            for t, lim in limits.items()
            if lim.events_per_minute is not None
        }

    @property
    def limits(self) -> dict[uuid.UUID, Limits]:
        return self._limits

    @limits.setter
    def limits(self, limits: dict[uuid.UUID, Limits]) -> None:
        self._limits = limits
        self._rates = self._rates_of(limits)

    def _window(self, tenant_id: uuid.UUID, now: float) -> _Window:
        found = self._windows.get(tenant_id)
        if found is not None and found.start <= now < found.end:
            return found
        start = window_start(now)
        if found is not None and found.start == start:  # float edge: same minute
            return found
        if found is not None and (found.events or found.accepted_over or found.refused):
            self._ended.append((tenant_id, found))
        made = self._windows[tenant_id] = _Window(start, start + WINDOW_SECONDS)
        return made

    def used(self, tenant_id: uuid.UUID, now: float) -> int:
        window = self._window(tenant_id, now)
        return window.others + window.local

    def admit(self, tenant_id: uuid.UUID, events: int, now: float, *, refusable: bool) -> Admission:
        """Count ``events`` of the tenant at ``now``. Past the rate, a refusable call (the
        internal API) is refused whole and counted as refused; any other is admitted and
        its events beyond the rate counted as accepted over the limit."""
        window = self._windows.get(tenant_id)
        if window is None or not window.start <= now < window.end:
            window = self._window(tenant_id, now)
        limit = self._rates.get(tenant_id)
        if limit is None or window.others + window.local + events <= limit:
            window.local += events
            window.events += events
            return ADMITTED
        over = min(events, window.others + window.local + events - limit)
        if refusable:
            window.refused += events
            retry = max(1, math.ceil(window.end - now))
            return Admission(False, over=events, retry_after=retry, limit=limit)
        window.local += events
        window.events += events
        window.accepted_over += over
        return Admission(True, over=over, limit=limit)

    def release(self, tenant_id: uuid.UUID, events: int, now: float) -> None:
        """Take back events admitted but then not stored (refused for another reason, or
        Kafka did not acknowledge): they do not count."""
        window = self._window(tenant_id, now)
        window.local = max(0, window.local - events)
        window.events -= events

    def take_pending(self) -> dict[tuple[uuid.UUID, float], WindowUsage]:
        """What was counted since the last call, to write; marked as written."""
        out: dict[tuple[uuid.UUID, float], WindowUsage] = {}
        ended, self._ended = self._ended, []
        for tenant_id, window in [*ended, *self._windows.items()]:
            if not (window.events or window.accepted_over or window.refused):
                continue
            out[(tenant_id, window.start)] = WindowUsage(
                window.events, window.accepted_over, window.refused
            )
            window.flushed += window.events
            window.events = window.accepted_over = window.refused = 0
        return out

    def restore(self, counts: Mapping[tuple[uuid.UUID, float], WindowUsage]) -> None:
        """Counts whose write failed: written with the next sync."""
        for (tenant_id, start), usage in counts.items():
            window = self._windows.get(tenant_id)
            if window is None or window.start != start:
                window = _Window(start, start + WINDOW_SECONDS)
                self._ended.append((tenant_id, window))
            window.flushed -= usage.events
            window.events += usage.events
            window.accepted_over += usage.accepted_over
            window.refused += usage.refused

    def observe_totals(self, start: float, totals: Mapping[uuid.UUID, int]) -> None:
        """Every process's events per tenant in the window at ``start``, as just read
        (after this process's counts were written): the others' share is the rest."""
        for tenant_id, total in totals.items():
            window = self._window(tenant_id, start)
            window.others = max(0, total - window.flushed)
