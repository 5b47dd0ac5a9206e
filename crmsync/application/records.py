"""Canonical records (customers, jobs, invoices, payments) with their external links."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import asyncpg

from crmsync.application import connections, pagination
from crmsync.application.context import Context
from crmsync.application.models import (
    CustomerQuery,
    FieldSource,
    InvoiceQuery,
    LinkOut,
    Page,
    RecordOut,
    RecordQuery,
)
from crmsync.application.paging import page
from crmsync.application.rows import tenant_row
from crmsync.common.canonical import TABLES
from crmsync.common.db import Conn
from crmsync.common.links import record_links

# Plural path segment -> entity type.
COLLECTIONS: dict[str, str] = {
    "customers": "customer",
    "jobs": "job",
    "invoices": "invoice",
    "payments": "payment",
}


async def _links(
    conn: Conn, ctx: Context, entity_type: str, ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[LinkOut]]:
    """The tenant's links of these records: a link another tenant holds to one (issue 15's
    bug wrote some) names that tenant's connection and its system's id."""
    rows = await record_links(conn, entity_type, ids, tenant_id=ctx.tenant_id)
    links: dict[uuid.UUID, list[LinkOut]] = defaultdict(list)
    for r in rows:
        links[r["entity_id"]].append(
            LinkOut(
                connection_id=r["connection_id"],
                provider=r["provider"],
                external_id=r["external_id"],
                last_pushed_version=r["last_pushed_version"],
                remote_updated_at=r["remote_updated_at"],
                updated_at=r["updated_at"],
            )
        )
    return links


def _provenance(field_meta: Any) -> dict[str, FieldSource]:
    """The processor's per-field merge state (``{"ts": ISO time, "source": ...}``), as
    the API shows it; an entry it cannot read is left out rather than failing the record."""
    out: dict[str, FieldSource] = {}
    for name, meta in (field_meta or {}).items():
        try:
            out[name] = FieldSource(source=str(meta["source"]), ts=meta["ts"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def _out(entity_type: str, row: asyncpg.Record, links: list[LinkOut]) -> RecordOut:
    return RecordOut(
        id=row["id"],
        entity_type=entity_type,
        version=row["version"],
        data=row["data"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        links=links,
        provenance=_provenance(row["field_meta"]),
    )


async def list_(conn: Conn, ctx: Context, entity_type: str, query: RecordQuery) -> Page[RecordOut]:
    """Oldest change first (``updated_since`` then reads as "what changed since")."""
    if query.connection is not None:
        await connections.require(conn, ctx, query.connection)
    table = TABLES[entity_type]
    after = pagination.decode(query.cursor, datetime, uuid.UUID) if query.cursor else None
    where = ["r.tenant_id = $1"]
    args: list[object] = [ctx.tenant_id]

    def arg(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if not query.include_deleted:
        where.append("r.deleted_at IS NULL")
    if query.updated_since is not None:
        where.append(f"r.updated_at >= {arg(query.updated_since)}")
    if query.connection is not None or query.external_id is not None:
        cond = [f"l.entity_type = {arg(entity_type)}", "l.entity_id = r.id", "l.tenant_id = $1"]
        if query.connection is not None:
            cond.append(f"l.connection_id = {arg(query.connection)}")
        if query.external_id is not None:
            cond.append(f"l.external_id = {arg(query.external_id)}")
        where.append(f"EXISTS (SELECT 1 FROM entity_links l WHERE {' AND '.join(cond)})")  # noqa: S608
    if isinstance(query, CustomerQuery) and query.email is not None:
        where.append(f"r.email_normalized = lower(btrim({arg(query.email)}))")
    if isinstance(query, InvoiceQuery):
        if query.number is not None:
            where.append(f"r.number = {arg(query.number)}")
        if query.status is not None:
            where.append(f"r.status = {arg(query.status)}")
    if after is not None:
        where.append(f"(r.updated_at, r.id) > ({arg(after[0])}, {arg(after[1])})")
    rows = await conn.fetch(
        f"""
        SELECT r.id, r.version, r.data, r.field_meta, r.created_at, r.updated_at, r.deleted_at
          FROM {table} r
         WHERE {" AND ".join(where)}
         ORDER BY r.updated_at, r.id
         LIMIT {arg(query.limit + 1)}
        """,  # noqa: S608 - table from the fixed map, every value a parameter
        *args,
    )
    links = await _links(conn, ctx, entity_type, [r["id"] for r in rows[: query.limit]])
    items = [_out(entity_type, r, links.get(r["id"], [])) for r in rows]
    return page(items, query.limit, lambda r: (r.updated_at, r.id))


async def get(conn: Conn, ctx: Context, entity_type: str, record_id: uuid.UUID) -> RecordOut:
    row = await tenant_row(
        conn,
        ctx,
        f"""
        SELECT id, version, data, field_meta, created_at, updated_at, deleted_at
          FROM {TABLES[entity_type]} WHERE id = $1 AND tenant_id = $2
        """,  # noqa: S608 - table from the fixed map
        record_id,
        f"no {entity_type} {record_id}",
    )
    links = await _links(conn, ctx, entity_type, [record_id])
    return _out(entity_type, row, links.get(record_id, []))
