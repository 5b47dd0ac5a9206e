"""The notifier: turns operational conditions into signed messages to tenants' endpoints.

Each pass (every ``interval`` seconds, in the outbound service):

1. **Evaluate**, under a transaction-scoped advisory lock so that one worker of many does
   it: the conditions that hold now, for tenants with an enabled endpoint —

   ======================== ========================================================
   connection.needs_reauth  the provider refused the credentials; pushes wait
   connection.circuit_open  pushes have waited on the breaker for ``circuit_minutes``
   connection.dead_letters  open dead letters of a connection reached ``dead_letters``
   sync_job.failed          a backfill or reconciliation failed (the last day's)
   quota.reached            a tenant's records or connections are at their limit, or
                            events went past its rate this minute or the last (one
                            episode per quota: a sustained excess is announced once)
   ======================== ========================================================

   A condition is announced once per episode: ``notification_conditions`` keeps it while
   it holds, and forgets it when it clears, so the next episode is announced again. The
   announcement is one ``notification_deliveries`` row per subscribed endpoint, written in
   the same transaction as the condition's ``notified_at``.
2. **Deliver** what is due: claimed with ``SKIP LOCKED`` and a lease (a worker that dies
   mid-send leaves it to another after the lease), POSTed as a Standard Webhooks message
   (``webhook-id`` is the delivery's id: receivers deduplicate by it), through the same
   egress guard as provider calls, redirects not followed. A non-2xx answer or a network
   error is retried on the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h,
   10 h, 10 h), then the delivery is ``failed`` with its last status and error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from connectors.standard_webhooks.signature import sign
from crmsync.application.notifications import secret_context
from crmsync.common import connections, pushes, quotas
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import Conn

log = logging.getLogger(__name__)

# Seconds to wait after each failed attempt; attempts beyond it give the delivery up.
RETRY_SCHEDULE = (5, 300, 1800, 7200, 18_000, 36_000, 36_000)
LEASE = timedelta(seconds=60)
SEND_TIMEOUT_SECONDS = 10.0
CLAIM_BATCH = 20
ERROR_CHARS = 500
# pg_try_advisory_xact_lock key of the evaluation: "crmsync-notify" (the failover test
# looks for its holder in pg_locks).
EVALUATE_LOCK = 0x6E6F74696679


@dataclass(frozen=True)
class Thresholds:
    circuit_minutes: float = 10.0
    dead_letters: int = 100


_OTHER_CONDITIONS = """
SELECT 'connection.dead_letters' AS event_type, tenant_id, connection_id AS subject,
       jsonb_build_object('connection_id', connection_id, 'open_dead_letters', count(*),
                          'threshold', $3::int) AS data
  FROM dead_letters
 WHERE tenant_id = ANY ($1::uuid[]) AND connection_id IS NOT NULL
   AND redriven_at IS NULL AND discarded_at IS NULL
 GROUP BY tenant_id, connection_id
HAVING count(*) >= $3::int
UNION ALL
SELECT 'sync_job.failed', tenant_id, id,
       jsonb_build_object('job_id', id, 'connection_id', connection_id, 'kind', kind,
                          'error', error)
  FROM sync_jobs
 WHERE tenant_id = ANY ($1::uuid[]) AND status = 'failed'
   AND finished_at > $2::timestamptz - interval '1 day'
"""

Key = tuple[uuid.UUID, str, uuid.UUID]


async def _conditions(conn: Conn, now: datetime, thresholds: Thresholds) -> dict[Key, Any]:
    """(tenant, event type, subject) -> the message's data, for what holds now."""
    tenants = [
        r["tenant_id"]
        for r in await conn.fetch(
            "SELECT DISTINCT tenant_id FROM notification_endpoints WHERE enabled"
        )
    ]
    if not tenants:
        return {}
    found: dict[Key, Any] = {}
    for r in await connections.needing_reauth(conn, tenants):
        found[(r["tenant_id"], "connection.needs_reauth", r["id"])] = {
            "connection_id": str(r["id"]),
            "provider": r["provider"],
            "name": r["name"],
        }
    for r in await pushes.waiting_on_breaker(conn, tenants, now):
        found[(r["tenant_id"], "connection.circuit_open", r["connection_id"])] = {
            "connection_id": str(r["connection_id"])
        }
    for tenant_id, quota, details in await quotas.reached(conn, tenants, now):
        found[(tenant_id, "quota.reached", quotas.subject(quota))] = details
    for r in await conn.fetch(_OTHER_CONDITIONS, tenants, now, thresholds.dead_letters):
        found[(r["tenant_id"], r["event_type"], r["subject"])] = r["data"]
    return found


async def evaluate(conn: Conn, *, now: datetime, thresholds: Thresholds) -> int:
    """One evaluation; returns the deliveries queued (0 when another worker holds it)."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", EVALUATE_LOCK):
            return 0
        data = await _conditions(conn, now, thresholds)
        keys = list(data)
        tenants = [k[0] for k in keys]
        types = [k[1] for k in keys]
        subjects = [k[2] for k in keys]
        # Cleared conditions are forgotten: their next episode is news again.
        await conn.execute(
            """
            DELETE FROM notification_conditions n
             WHERE NOT EXISTS (
                   SELECT 1 FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS c(t, e, s)
                    WHERE c.t = n.tenant_id AND c.e = n.event_type AND c.s = n.subject)
            """,
            tenants,
            types,
            subjects,
        )
        await conn.execute(
            """
            INSERT INTO notification_conditions (tenant_id, event_type, subject, first_seen)
            SELECT * , $4::timestamptz FROM unnest($1::uuid[], $2::text[], $3::uuid[])
            ON CONFLICT DO NOTHING
            """,
            tenants,
            types,
            subjects,
            now,
        )
        hold = now - timedelta(minutes=thresholds.circuit_minutes)
        due = await conn.fetch(
            """
            UPDATE notification_conditions SET notified_at = $1
             WHERE notified_at IS NULL
               AND (event_type <> 'connection.circuit_open' OR first_seen <= $2)
            RETURNING tenant_id, event_type, subject, first_seen
            """,
            now,
            hold,
        )
        queued = 0
        for row in due:
            payload = {
                "type": row["event_type"],
                "timestamp": now.isoformat(),
                "data": {
                    **data[(row["tenant_id"], row["event_type"], row["subject"])],
                    "since": row["first_seen"].isoformat(),
                },
            }
            status = await conn.execute(
                """
                INSERT INTO notification_deliveries
                       (endpoint_id, tenant_id, event_type, payload, next_attempt_at)
                SELECT id, tenant_id, $2, $3::jsonb, $4 FROM notification_endpoints
                 WHERE tenant_id = $1 AND enabled
                   AND (event_types = '{}' OR $2 = ANY (event_types))
                """,
                row["tenant_id"],
                row["event_type"],
                payload,
                now,
            )
            queued += int(status.split()[-1])
        return queued


@dataclass(frozen=True)
class _Claimed:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    secret_encrypted: str
    payload: Any
    attempts: int


async def _claim(conn: Conn, now: datetime) -> list[_Claimed]:
    rows = await conn.fetch(
        """
        UPDATE notification_deliveries d SET next_attempt_at = $2
          FROM notification_endpoints e
         WHERE d.id IN (SELECT id FROM notification_deliveries
                         WHERE status = 'pending' AND next_attempt_at <= $1
                         ORDER BY next_attempt_at
                         LIMIT $3
                           FOR UPDATE SKIP LOCKED)
           AND e.id = d.endpoint_id
        RETURNING d.id, d.endpoint_id, e.url, e.secret_encrypted, d.payload, d.attempts
        """,
        now,
        now + LEASE,
        CLAIM_BATCH,
    )
    return [_Claimed(**dict(r)) for r in rows]


async def _finish(
    conn: Conn, item: _Claimed, *, now: datetime, status: int | None, error: str | None
) -> None:
    if error is None:
        await conn.execute(
            """
            UPDATE notification_deliveries
               SET status = 'delivered', attempts = attempts + 1, last_status = $2,
                   last_error = NULL, delivered_at = $3
             WHERE id = $1
            """,
            item.id,
            status,
            now,
        )
        return
    attempts = item.attempts + 1
    give_up = attempts > len(RETRY_SCHEDULE)
    wait = RETRY_SCHEDULE[min(attempts, len(RETRY_SCHEDULE)) - 1]
    await conn.execute(
        """
        UPDATE notification_deliveries
           SET status = CASE WHEN $2 THEN 'failed' ELSE 'pending' END,
               attempts = $3, next_attempt_at = $4, last_status = $5, last_error = $6
         WHERE id = $1
        """,
        item.id,
        give_up,
        attempts,
        now + timedelta(seconds=wait),
        status,
        error[:ERROR_CHARS],
    )


async def _send(
    session: aiohttp.ClientSession, keyring: KeyRing, item: _Claimed, now: datetime
) -> tuple[int | None, str | None]:
    try:
        secret = keyring.decrypt(item.secret_encrypted, secret_context(item.endpoint_id))
    except CryptoError as exc:
        return None, f"secret_unreadable: {exc}"
    body = json.dumps(item.payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "crmsync-notifier",
        **sign(secret, f"msg_{item.id}", int(now.timestamp()), body),
    }
    try:
        async with session.post(
            item.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_SECONDS),
        ) as response:
            if 200 <= response.status < 300:
                return response.status, None
            return response.status, f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


async def deliver_due(
    pool: asyncpg.Pool, session: aiohttp.ClientSession, keyring: KeyRing, *, now: datetime
) -> int:
    """Send what is due now; returns how many were attempted."""
    attempted = 0
    while True:
        async with pool.acquire() as conn:
            claimed = await _claim(conn, now)
        if not claimed:
            return attempted
        results = await asyncio.gather(*(_send(session, keyring, c, now) for c in claimed))
        async with pool.acquire() as conn:
            for item, (status, error) in zip(claimed, results, strict=True):
                await _finish(conn, item, now=now, status=status, error=error)
        attempted += len(claimed)


class Notifier:
    """Evaluate and deliver every ``interval`` seconds (supervised by the outbound service)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        keyring: KeyRing,
        *,
        thresholds: Thresholds,
        interval: float,
    ) -> None:
        self.pool = pool
        self.session = session
        self.keyring = keyring
        self.thresholds = thresholds
        self.interval = interval

    async def once(self) -> None:
        now = datetime.now(UTC)
        async with self.pool.acquire() as conn:
            queued = await evaluate(conn, now=now, thresholds=self.thresholds)
        if queued:
            log.info("notifications queued: %d", queued)
        await deliver_due(self.pool, self.session, self.keyring, now=datetime.now(UTC))

    async def run(self) -> None:
        while True:
            await self.once()
            await asyncio.sleep(self.interval)
