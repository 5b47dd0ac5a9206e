"""Links between canonical records and their ids in each connected system (entity_links):
the one data-access module for them.

A link is one connection's id for one record; links are keyed by connection, and a
connection is one tenant's, so a read by connection is a read of that tenant's links.
Reads that start from a record's id carry the tenant explicitly (issue 15's bug wrote
links from one tenant's connection to another tenant's records).

Left where they are, as one statement each with the other tables they need: the
processor's apply and batch writes (services/processor/apply.py, batch.py), the
outbound push's read and remember statements (services/outbound/pusher.py: one round
trip, one transaction), and reports that join links to other tables (the ledger, the
records listing's filter, the demo's checks). tests/unit/test_data_access.py lists them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg

from crmsync.common.canonical import TABLES
from crmsync.common.db import Conn

# (connection id, entity type, the system's id) → the canonical record's id.
LinkKey = tuple[uuid.UUID, str, str]


async def entity_ids(
    conn: Conn | asyncpg.Pool, keys: Iterable[LinkKey]
) -> dict[LinkKey, uuid.UUID]:
    """The canonical record each (connection, entity type, external id) is linked to; keys
    not linked yet are absent. One lookup by the links' unique key for the whole batch."""
    wanted = set(keys)
    if not wanted:
        return {}
    c_ids, types, x_ids = (list(col) for col in zip(*wanted, strict=True))
    rows = await conn.fetch(
        """
        SELECT l.connection_id, l.entity_type, l.external_id, l.entity_id
          FROM unnest($1::uuid[], $2::text[], $3::text[]) AS w(c, e, x)
          JOIN entity_links l
            ON l.connection_id = w.c AND l.entity_type = w.e AND l.external_id = w.x
        """,
        c_ids,
        types,
        x_ids,
    )
    return {(r["connection_id"], r["entity_type"], r["external_id"]): r["entity_id"] for r in rows}


async def remote_updated_at(
    conn: Conn | asyncpg.Pool,
    connection_id: uuid.UUID,
    entity_type: str,
    external_ids: Sequence[str],
) -> dict[str, datetime | None]:
    """For each of these ids the connection has a link for, the provider's updated-at of
    the newest state of it we applied (None when the provider gave none)."""
    return await _stamps(conn, "remote_updated_at", connection_id, entity_type, external_ids)


async def pushed_updated_at(
    conn: Conn | asyncpg.Pool,
    connection_id: uuid.UUID,
    entity_type: str,
    external_ids: Sequence[str],
) -> dict[str, datetime]:
    """For each of these ids we have written to, the provider's updated-at of our last
    write as its answer reported it (migration 0020); ids never written to are absent."""
    stamps = await _stamps(
        conn, "pushed_updated_at", connection_id, entity_type, external_ids, known_only=True
    )
    return {external_id: at for external_id, at in stamps.items() if at is not None}


async def _stamps(
    conn: Conn | asyncpg.Pool,
    column: str,
    connection_id: uuid.UUID,
    entity_type: str,
    external_ids: Sequence[str],
    *,
    known_only: bool = False,
) -> dict[str, datetime | None]:
    """``column`` (a timestamp of this module's) of the connection's links for these ids;
    ``known_only``: only the links where it is set."""
    known = f" AND {column} IS NOT NULL" if known_only else ""
    rows = await conn.fetch(
        f"""
        SELECT external_id, {column} AS stamp FROM entity_links
         WHERE connection_id = $1 AND entity_type = $2 AND external_id = ANY($3){known}
        """,  # noqa: S608 - a constant column name
        connection_id,
        entity_type,
        list(external_ids),
    )
    return {r["external_id"]: r["stamp"] for r in rows}


async def unlisted_external_ids(
    conn: Conn | asyncpg.Pool,
    *,
    connection_id: uuid.UUID,
    entity_type: str,
    created_before: datetime | None,
    job_id: uuid.UUID,
) -> list[str]:
    """The connection's links to live records, made before ``created_before``, that the
    sync job ``job_id`` did not see listed (sync_job_seen): records the provider deleted."""
    rows = await conn.fetch(
        f"""
        SELECT l.external_id
          FROM entity_links l
          JOIN {TABLES[entity_type]} r ON r.id = l.entity_id
         WHERE l.connection_id = $1 AND l.entity_type = $2
           AND r.deleted_at IS NULL AND l.created_at < $3
           AND NOT EXISTS (SELECT 1 FROM sync_job_seen s
                            WHERE s.job_id = $4 AND s.entity_type = $2
                              AND s.external_id = l.external_id)
        """,  # noqa: S608 - table names from a fixed map
        connection_id,
        entity_type,
        created_before,
        job_id,
    )
    return [r["external_id"] for r in rows]


async def count_links(conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, entity_type: str) -> int:
    """How many records of ``entity_type`` the connection has a link for."""
    total: int = await conn.fetchval(
        "SELECT count(*) FROM entity_links WHERE connection_id = $1 AND entity_type = $2",
        connection_id,
        entity_type,
    )
    return total


async def linked_to(
    conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, entity_type: str, external_id: str
) -> uuid.UUID | None:
    """The record the connection's ``external_id`` is linked to, if any."""
    found: uuid.UUID | None = await conn.fetchval(
        """
        SELECT entity_id FROM entity_links
         WHERE connection_id = $1 AND entity_type = $2 AND external_id = $3
        """,
        connection_id,
        entity_type,
        external_id,
    )
    return found


async def external_ids(
    conn: Conn | asyncpg.Pool, connection_id: uuid.UUID, entity_type: str
) -> dict[str, uuid.UUID]:
    """Every link of the connection for ``entity_type``: its id there → the record's id."""
    rows = await conn.fetch(
        """
        SELECT external_id, entity_id FROM entity_links
         WHERE connection_id = $1 AND entity_type = $2
        """,
        connection_id,
        entity_type,
    )
    return {r["external_id"]: r["entity_id"] for r in rows}


async def record_links(
    conn: Conn | asyncpg.Pool, entity_type: str, ids: Sequence[uuid.UUID], *, tenant_id: uuid.UUID
) -> list[asyncpg.Record]:
    """The tenant's links of these records, oldest first, with each connection's provider
    (entity_id, connection_id, provider, external_id, last_pushed_version,
    remote_updated_at, updated_at). A link another tenant holds to one of them is not
    among them."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT l.entity_id, l.connection_id, c.provider, l.external_id, l.last_pushed_version,
               l.remote_updated_at, l.updated_at
          FROM entity_links l JOIN connections c ON c.id = l.connection_id AND c.tenant_id = $3
         WHERE l.entity_type = $1 AND l.entity_id = ANY($2::uuid[]) AND l.tenant_id = $3
         ORDER BY l.created_at, l.id
        """,
        entity_type,
        list(ids),
        tenant_id,
    )
    return rows


async def record_and_link(
    conn: Conn | asyncpg.Pool,
    entity_type: str,
    entity_id: uuid.UUID,
    connection_id: uuid.UUID,
    *,
    tenant_id: uuid.UUID,
) -> asyncpg.Record | None:
    """The tenant's record (version, deleted) with the connection's id for it
    (external_id, None when not linked); None when the tenant has no such record."""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        SELECT r.version, r.deleted_at IS NOT NULL AS deleted, l.external_id
          FROM {TABLES[entity_type]} r
          LEFT JOIN entity_links l
                 ON l.entity_id = r.id AND l.entity_type = $3 AND l.connection_id = $4
                AND l.tenant_id = r.tenant_id
         WHERE r.id = $1 AND r.tenant_id = $2
        """,  # noqa: S608 - the table name comes from TABLES
        entity_id,
        tenant_id,
        entity_type,
        connection_id,
    )
    return row


async def erased_links(conn: Conn | asyncpg.Pool, keys: Iterable[LinkKey]) -> set[LinkKey]:
    """Those of ``keys`` linked to a record a privacy erase anonymised (a row of
    privacy_tombstones, migration 0017): one lookup by the links' unique key."""
    wanted = set(keys)
    if not wanted:
        return set()
    connection_ids, entity_types, external_ids = (list(col) for col in zip(*wanted, strict=True))
    rows = await conn.fetch(
        """
        SELECT l.connection_id, l.entity_type, l.external_id
          FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(c, e, x)
          JOIN entity_links l
            ON l.connection_id = k.c AND l.entity_type = k.e AND l.external_id = k.x
          JOIN privacy_tombstones t ON t.tenant_id = l.tenant_id AND t.entity_id = l.entity_id
        """,
        connection_ids,
        entity_types,
        external_ids,
    )
    return {(r["connection_id"], r["entity_type"], r["external_id"]) for r in rows}


async def forget_snapshots(
    conn: Conn | asyncpg.Pool, entity_type: str, ids: Sequence[uuid.UUID], *, tenant_id: uuid.UUID
) -> int:
    """Drop what each connection last told us of these records (snapshot and hash: the
    merge base, which holds the record's values) and the hashes of what we pushed it. The
    links themselves stay: they are how a later webhook of the record is recognised.
    Returns how many links were cleared."""
    result: str = await conn.execute(
        """
        UPDATE entity_links SET last_seen_snapshot = NULL, last_seen_hash = NULL,
                                last_pushed_hash = NULL, pushes = '[]', updated_at = now()
         WHERE tenant_id = $1 AND entity_type = $2 AND entity_id = ANY($3::uuid[])
        """,
        tenant_id,
        entity_type,
        list(ids),
    )
    return int(result.rsplit(" ", 1)[-1])
