"""Dead letters: list, show, redrive (each re-enters at its stage), discard.

- ingest, processor and hydrate dead letters hold the Kafka record exactly as it was read
  (topic, key, value): a redrive produces it back onto that topic with its original key;
  the processor's dedup makes a second delivery of an applied event a no-op.
- outbound dead letters name the record a push failed for: a redrive queues a push of
  the record's current version to that connection again (an upsert into push_jobs).

A dead letter is marked redriven in the same transaction that claims it, committed only
after Kafka acknowledged (or the push was queued), so a failed redrive leaves it open.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import asyncpg

from crmsync.application import connections
from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, NotFoundError
from crmsync.application.kafka_io import Record, produce
from crmsync.application.models import (
    DeadLetterDetail,
    DeadLetterOut,
    DeadLetterQuery,
    Page,
    RedriveFailure,
    RedriveMany,
    RedriveResult,
)
from crmsync.application.paging import Listing
from crmsync.application.rows import owned
from crmsync.common.canonical import TABLES
from crmsync.common.connections import connection_exists
from crmsync.common.db import Conn
from crmsync.common.pushes import Push, queue_pushes
from schemas import topics

_COLUMNS = """
    id, stage, reason, detail, connection_id, topic, kafka_partition, kafka_offset,
    octet_length(payload) AS payload_bytes, created_at, redriven_at, discarded_at
"""
_STATE = {
    "open": "redriven_at IS NULL AND discarded_at IS NULL",
    "redriven": "redriven_at IS NOT NULL",
    "discarded": "discarded_at IS NOT NULL",
    "all": "true",
}


def _out(row: asyncpg.Record) -> DeadLetterOut:
    return DeadLetterOut(
        id=row["id"],
        stage=row["stage"],
        reason=row["reason"],
        detail=row["detail"],
        connection_id=row["connection_id"],
        topic=row["topic"],
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        payload_bytes=row["payload_bytes"],
        created_at=row["created_at"],
        redriven_at=row["redriven_at"],
        discarded_at=row["discarded_at"],
    )


async def list_(conn: Conn, ctx: Context, query: DeadLetterQuery) -> Page[DeadLetterOut]:
    """Newest first."""
    if query.connection is not None:
        await connections.require(conn, ctx, query.connection)
    listing = Listing(_COLUMNS, "dead_letters", newest_first=True)
    listing.where("tenant_id = {}", ctx.tenant_id).where(_STATE[query.state])
    listing.match(stage=query.stage, reason=query.reason, connection_id=query.connection)
    return await listing.page(conn, query.cursor, query.limit, _out)


async def get(conn: Conn, ctx: Context, dead_letter_id: uuid.UUID) -> DeadLetterDetail:
    row = await owned(
        conn, ctx, "dead_letters", f"{_COLUMNS}, payload", dead_letter_id, what="dead letter"
    )
    payload: bytes = row["payload"]
    try:
        text: str | None = payload.decode()
    except UnicodeDecodeError:
        text = None
    return DeadLetterDetail(
        **_out(row).model_dump(),
        payload_text=text,
        payload_base64=base64.b64encode(payload).decode(),
    )


async def _summary(conn: Conn, ctx: Context, dead_letter_id: uuid.UUID) -> DeadLetterOut:
    row = await owned(conn, ctx, "dead_letters", _COLUMNS, dead_letter_id, what="dead letter")
    return _out(row)


@audited("dead_letter.discard")
async def discard(conn: Conn, ctx: Context, dead_letter_id: uuid.UUID) -> DeadLetterOut:
    async with conn.transaction():
        row = await owned(
            conn,
            ctx,
            "dead_letters",
            "redriven_at, discarded_at",
            dead_letter_id,
            what="dead letter",
            for_update=True,
        )
        if row["redriven_at"] is not None or row["discarded_at"] is not None:
            raise ConflictError("the dead letter was already redriven or discarded")
        await conn.execute(
            "UPDATE dead_letters SET discarded_at = now() WHERE id = $1 AND tenant_id = $2",
            dead_letter_id,
            ctx.tenant_id,
        )
    return await _summary(conn, ctx, dead_letter_id)


@audited("dead_letter.redrive")
async def redrive_one(conn: Conn, ctx: Context, dead_letter_id: uuid.UUID) -> DeadLetterOut:
    await owned(
        conn, ctx, "dead_letters", "redriven_at, discarded_at", dead_letter_id, what="dead letter"
    )
    result = await _redrive(conn, ctx, [dead_letter_id], limit=1)
    if result.failed:
        raise ConflictError(
            f"the dead letter cannot be redriven: {result.failed[0].reason}",
            reason=result.failed[0].reason,
        )
    if not result.redriven:
        raise ConflictError("the dead letter was already redriven or discarded")
    return await _summary(conn, ctx, dead_letter_id)


@audited("dead_letter.redrive_many")
async def redrive_many(conn: Conn, ctx: Context, body: RedriveMany) -> RedriveResult:
    if body.connection is not None:
        await connections.require(conn, ctx, body.connection)
    ids = await conn.fetch(
        """
        SELECT id FROM dead_letters
         WHERE tenant_id = $1 AND redriven_at IS NULL AND discarded_at IS NULL
           AND ($2::uuid[] IS NULL OR id = ANY($2))
           AND ($3::text IS NULL OR stage = $3)
           AND ($4::text IS NULL OR reason = $4)
           AND ($5::uuid IS NULL OR connection_id = $5)
         ORDER BY created_at, id
         LIMIT $6
        """,
        ctx.tenant_id,
        body.ids,
        body.stage,
        body.reason,
        body.connection,
        body.limit,
    )
    if body.ids is not None:
        unknown = set(body.ids) - {r["id"] for r in ids}
        if unknown and not await _all_known(conn, ctx, list(unknown)):
            raise NotFoundError("some of the dead letters named do not exist")
    return await _redrive(conn, ctx, [r["id"] for r in ids], limit=body.limit)


async def _all_known(conn: Conn, ctx: Context, ids: list[uuid.UUID]) -> bool:
    found = await conn.fetchval(
        "SELECT count(*) FROM dead_letters WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
        ctx.tenant_id,
        ids,
    )
    return int(found) == len(ids)


async def _redrive(conn: Conn, ctx: Context, ids: list[uuid.UUID], *, limit: int) -> RedriveResult:
    redriven: list[uuid.UUID] = []
    failed: list[RedriveFailure] = []
    if not ids:
        return RedriveResult(redriven=redriven, failed=failed)
    async with conn.transaction():
        rows = await conn.fetch(
            """
            SELECT id, stage, connection_id, topic, record_key, payload FROM dead_letters
             WHERE tenant_id = $1 AND id = ANY($2::uuid[])
               AND redriven_at IS NULL AND discarded_at IS NULL
             ORDER BY created_at, id
             LIMIT $3
               FOR UPDATE SKIP LOCKED
            """,
            ctx.tenant_id,
            ids,
            limit,
        )
        to_kafka: list[Record] = []
        for row in rows:
            if row["stage"] == "outbound":
                problem = await _requeue_push(conn, ctx, row["payload"])
                if problem is not None:
                    failed.append(RedriveFailure(id=row["id"], reason=problem))
                    continue
            elif row["topic"]:
                # Marked, so the ledger does not count the copy as a new acknowledgement.
                marked = [(topics.REPRODUCED_HEADER, b"redrive")]
                to_kafka.append((row["topic"], row["record_key"], row["payload"], marked))
            else:
                failed.append(RedriveFailure(id=row["id"], reason="no_source_topic"))
                continue
            redriven.append(row["id"])
        # Kafka first: if it does not acknowledge, the transaction rolls back and the dead
        # letters stay open. A crash after the ack but before the commit re-sends on the
        # next redrive, which the processor's dedup absorbs.
        await produce(ctx.kafka, to_kafka)
        await conn.execute(
            "UPDATE dead_letters SET redriven_at = now()"
            " WHERE id = ANY($1::uuid[]) AND tenant_id = $2",
            redriven,
            ctx.tenant_id,
        )
    return RedriveResult(redriven=redriven, failed=failed)


async def _requeue_push(conn: Conn, ctx: Context, payload: bytes) -> str | None:
    """Queue a push of the record's current version; a reason when it cannot be."""
    try:
        parsed: dict[str, Any] = json.loads(payload)
        connection_id = uuid.UUID(str(parsed["connection_id"]))
        entity_type = str(parsed["entity_type"])
        entity_id = uuid.UUID(str(parsed["entity_id"]))
        table = TABLES[entity_type]
    except (ValueError, KeyError, TypeError):
        return "unreadable_payload"
    if not await connection_exists(conn, connection_id, tenant_id=ctx.tenant_id):
        return "connection_deleted"
    version = await conn.fetchval(
        f"SELECT version FROM {table} WHERE id = $1 AND tenant_id = $2",  # noqa: S608 - fixed map
        entity_id,
        ctx.tenant_id,
    )
    if version is None:
        return "record_deleted"
    # The same upsert the outbound queue makes: a pending push of a newer version stays,
    # any other is (re)due now with a fresh attempt count.
    await queue_pushes(
        conn,
        [Push(ctx.tenant_id, connection_id, entity_type, entity_id, version)],
        due_now=True,
        reset_attempts=True,
    )
    return None
