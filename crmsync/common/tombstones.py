"""Privacy tombstones (migration 0016): the people a privacy erase removed, kept as a hash
of their email so nothing brings them back, and never as the email itself.

Written by the erase (crmsync.application.privacy), read by the processor before it
applies a batch: both need the same hash, so it is computed here, once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence

import asyncpg

from crmsync.common.db import Conn

# (tenant id, identity hash)
Identity = tuple[uuid.UUID, str]


def normalise_email(email: str) -> str:
    """The form customers are matched by (customers.email_normalized: lower(btrim(...)))."""
    return email.strip().lower()


def identity_hash(tenant_id: uuid.UUID, email: str) -> str:
    """SHA-256 of the tenant id and the normalised email, hex. The tenant is part of it, so
    one address erased in two tenants leaves two unrelated hashes, and a table of hashes
    of common addresses computed once does not open every tenant's tombstones. An email
    is guessable, so the hash hides it from a reader, not from one who already knows it:
    which is all a tombstone needs to answer."""
    digest = hashlib.sha256(f"{tenant_id}:{normalise_email(email)}".encode())
    return "sha256:" + digest.hexdigest()


async def erased_identities(conn: Conn | asyncpg.Pool, wanted: Iterable[Identity]) -> set[Identity]:
    """Those of ``wanted`` that a tombstone holds, in one lookup."""
    keys = set(wanted)
    if not keys:
        return set()
    tenants, hashes = (list(col) for col in zip(*keys, strict=True))
    rows = await conn.fetch(
        """
        SELECT DISTINCT t.tenant_id, t.identity_hash
          FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, identity_hash)
          JOIN privacy_tombstones t
            ON t.tenant_id = k.tenant_id AND t.identity_hash = k.identity_hash
        """,
        tenants,
        hashes,
    )
    return {(r["tenant_id"], r["identity_hash"]) for r in rows}


async def erased_records(
    conn: Conn | asyncpg.Pool, tenant_id: uuid.UUID, identity: str
) -> list[uuid.UUID]:
    """The customers an earlier erase of this identity anonymised, oldest first."""
    rows = await conn.fetch(
        """
        SELECT entity_id FROM privacy_tombstones
         WHERE tenant_id = $1 AND identity_hash = $2
         ORDER BY erased_at, entity_id
        """,
        tenant_id,
        identity,
    )
    return [r["entity_id"] for r in rows]


async def add(
    conn: Conn | asyncpg.Pool,
    tenant_id: uuid.UUID,
    entity_ids: Sequence[uuid.UUID],
    identity: str,
    *,
    erased_by: str,
) -> None:
    """A tombstone per erased customer; one already there stays as it was."""
    await conn.execute(
        """
        INSERT INTO privacy_tombstones (tenant_id, entity_id, identity_hash, erased_by)
        SELECT $1, e, $3, $4 FROM unnest($2::uuid[]) AS e
        ON CONFLICT DO NOTHING
        """,
        tenant_id,
        list(entity_ids),
        identity,
        erased_by,
    )
