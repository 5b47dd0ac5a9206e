"""Conflicts parked by the ``manual`` policy: list, show, resolve by choosing a value.

Resolving with a value the record does not hold changes the record like any other
change: version + 1 and an outbox row in the same transaction (invariant 3), so the
chosen value goes out to every connection.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, InvalidError
from crmsync.application.models import ConflictOut, ConflictQuery, ConflictResolve, Page
from crmsync.application.paging import Listing
from crmsync.application.rows import owned
from crmsync.common.canonical import TABLES, InvalidRecordError, canonical_values
from crmsync.common.db import Conn
from schemas.records import CanonicalRecord

_COLUMNS = """
    id, entity_type, entity_id, field, current_value, incoming_value, incoming_connection_id,
    incoming_source_ts, created_at, resolved_at, resolution
"""
_STATE = {
    "open": "resolved_at IS NULL",
    "resolved": "resolved_at IS NOT NULL",
    "all": "true",
}
# field_meta source of a value an operator chose (connection ids otherwise).
ADMIN_SOURCE = "admin"


def _out(row: asyncpg.Record) -> ConflictOut:
    return ConflictOut(**dict(row))


async def list_(conn: Conn, ctx: Context, query: ConflictQuery) -> Page[ConflictOut]:
    """Oldest first: the longest-waiting conflict is at the top."""
    listing = Listing(_COLUMNS, "conflicts").where("tenant_id = {}", ctx.tenant_id)
    listing.where(_STATE[query.state]).match(
        entity_type=query.entity_type, entity_id=query.entity_id
    )
    return await listing.page(conn, query.cursor, query.limit, _out)


async def get(conn: Conn, ctx: Context, conflict_id: uuid.UUID) -> ConflictOut:
    row = await owned(conn, ctx, "conflicts", _COLUMNS, conflict_id, what="conflict")
    return _out(row)


@audited("conflict.resolve")
async def resolve(
    conn: Conn, ctx: Context, conflict_id: uuid.UUID, body: ConflictResolve, *, now: datetime
) -> ConflictOut:
    async with conn.transaction():
        row = await owned(
            conn, ctx, "conflicts", _COLUMNS, conflict_id, what="conflict", for_update=True
        )
        if row["resolved_at"] is not None:
            raise ConflictError("the conflict is already resolved")
        resolution: dict[str, Any] = {"choose": body.choose, "by": ctx.actor}
        if body.choose != "current":
            value = row["incoming_value"] if body.choose == "incoming" else body.value
            version = await _apply(conn, ctx, row, value, now=now)
            resolution["value"] = value
            resolution["version"] = version
        await conn.execute(
            "UPDATE conflicts SET resolved_at = $2, resolution = $3"
            " WHERE id = $1 AND tenant_id = $4",
            conflict_id,
            now,
            resolution,
            ctx.tenant_id,
        )
    return await get(conn, ctx, conflict_id)


async def _apply(
    conn: Conn, ctx: Context, conflict: asyncpg.Record, value: Any, *, now: datetime
) -> int | None:
    """Set the field on the record; the new version, or None when it already held it."""
    entity_type: str = conflict["entity_type"]
    field: str = conflict["field"]
    table = TABLES.get(entity_type)
    if table is None:
        raise ConflictError(f"unknown entity type {entity_type}")
    try:
        checked = canonical_values(entity_type, {field: value})
    except InvalidRecordError as exc:
        raise InvalidError(
            "the value does not fit the field", loc="/body/value", msg=exc.detail
        ) from None
    record = await conn.fetchrow(
        f"""
        SELECT data, field_meta, version, deleted_at FROM {table}
         WHERE id = $1 AND tenant_id = $2 FOR UPDATE
        """,  # noqa: S608 - table from the fixed map
        conflict["entity_id"],
        ctx.tenant_id,
    )
    if record is None or record["deleted_at"] is not None:
        raise ConflictError("the record was deleted; nothing to resolve on it")
    data = dict(record["data"])
    if field in data and data[field] == checked.get(field):
        return None
    data[field] = checked.get(field)
    meta = dict(record["field_meta"])
    meta[field] = {"ts": now.isoformat(), "source": ADMIN_SOURCE}
    version = int(record["version"]) + 1
    await conn.execute(
        f"""
        UPDATE {table} SET data = $2, field_meta = $3, version = $4, updated_at = now()
         WHERE id = $1 AND tenant_id = $5
        """,  # noqa: S608 - table from the fixed map
        conflict["entity_id"],
        data,
        meta,
        version,
        ctx.tenant_id,
    )
    change_id = uuid.uuid4()
    payload = CanonicalRecord(
        tenant_id=ctx.tenant_id,
        entity_type=entity_type,
        entity_id=conflict["entity_id"],
        version=version,
        origin_connection_id=None,
        change_id=change_id,
        committed_at=now,
        state=data,
    ).model_dump(mode="json")
    # The outbox relay publishes it to records.changed (origin none: every connection).
    await conn.execute(
        """
        INSERT INTO outbox (change_id, tenant_id, entity_type, entity_id, version,
                            origin_connection_id, payload)
        VALUES ($1, $2, $3, $4, $5, NULL, $6)
        """,
        change_id,
        ctx.tenant_id,
        entity_type,
        conflict["entity_id"],
        version,
        payload,
    )
    return version
