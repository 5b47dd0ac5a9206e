"""API keys of a tenant: create (the key is shown once), list, show, rotate, revoke."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, InvalidError, NotFoundError
from crmsync.application.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyDetail,
    ApiKeyOut,
    ApiKeyQuery,
    ApiKeyRotate,
    ApiKeyUsageDay,
    Page,
)
from crmsync.application.paging import Listing
from crmsync.application.rows import owned, tenant_row
from crmsync.common import apikeys
from crmsync.common.connections import provider_of
from crmsync.common.db import Conn

_COLUMNS = """
    id, scope, key_prefix, connection_id, created_at, expires_at, revoked_at, last_used_at
"""


def _out(row: asyncpg.Record) -> ApiKeyOut:
    return ApiKeyOut(**dict(row))


async def _row(conn: Conn, ctx: Context, key_id: uuid.UUID) -> asyncpg.Record:
    return await owned(conn, ctx, "api_keys", _COLUMNS, key_id, what="API key")


@audited("api_key.create")
async def create(conn: Conn, ctx: Context, body: ApiKeyCreate, *, now: datetime) -> ApiKeyCreated:
    if body.expires_at is not None and body.expires_at <= now:
        raise InvalidError(
            "expiry in the past", loc="/body/expires_at", msg="must be in the future"
        )
    if body.scope == "publish":
        # A publish key speaks for one internal connection: ingest stamps its changes with it.
        provider = None
        if body.connection is not None:
            provider = await provider_of(conn, body.connection, tenant_id=ctx.tenant_id)
            if provider is None:
                raise NotFoundError(f"no connection {body.connection}")
        if provider != "internal":
            raise InvalidError(
                "a publish key needs an internal connection",
                loc="/body/connection",
                msg="name an internal connection of the tenant",
            )
    elif body.connection is not None:
        raise InvalidError(
            "only publish keys belong to a connection",
            loc="/body/connection",
            msg="not allowed for this scope",
        )
    created = await apikeys.create_key(
        conn, ctx.tenant_id, body.scope, expires_at=body.expires_at, connection_id=body.connection
    )
    return ApiKeyCreated(**_out(await _row(conn, ctx, created.id)).model_dump(), key=created.key)


async def list_(conn: Conn, ctx: Context, query: ApiKeyQuery) -> Page[ApiKeyOut]:
    listing = Listing(_COLUMNS, "api_keys").where("tenant_id = {}", ctx.tenant_id)
    if not query.include_revoked:
        listing.where("revoked_at IS NULL")
    return await listing.page(conn, query.cursor, query.limit, _out)


# How far back a key's detail reports its requests per day.
USAGE_DAYS = 30


async def get(conn: Conn, ctx: Context, key_id: uuid.UUID) -> ApiKeyDetail:
    """A key with its requests per day (the last ``USAGE_DAYS`` UTC days, newest first)."""
    key = _out(await _row(conn, ctx, key_id))
    rows = await conn.fetch(
        """
        SELECT day, requests FROM api_key_usage
         WHERE key_id = $1 AND day > (now() AT TIME ZONE 'UTC')::date - $2::int
         ORDER BY day DESC
        """,
        key_id,
        USAGE_DAYS,
    )
    return ApiKeyDetail(**key.model_dump(), usage=[ApiKeyUsageDay(**dict(r)) for r in rows])


@audited("api_key.revoke")
async def revoke(conn: Conn, ctx: Context, key_id: uuid.UUID) -> ApiKeyOut:
    """Revoke now (idempotent: a revoked key keeps its first revocation time)."""
    row = await tenant_row(
        conn,
        ctx,
        f"""
        UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND tenant_id = $2 RETURNING {_COLUMNS}
        """,  # noqa: S608
        key_id,
        f"no API key {key_id}",
    )
    return _out(row)


@audited("api_key.rotate")
async def rotate(
    conn: Conn, ctx: Context, key_id: uuid.UUID, body: ApiKeyRotate, *, now: datetime
) -> ApiKeyCreated:
    """A new key of the same scope; the old one keeps working for the overlap, then expires."""
    async with conn.transaction():
        old = await conn.fetchrow(
            """
            SELECT scope, connection_id, expires_at FROM api_keys
             WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL
               AND (expires_at IS NULL OR expires_at > $3)
               FOR UPDATE
            """,
            key_id,
            ctx.tenant_id,
            now,
        )
        if old is None:
            # Revoked or expired keys are not rotated: create a new one instead.
            await _row(conn, ctx, key_id)
            raise ConflictError("the key is revoked or expired: create a new one")
        retire = now + timedelta(seconds=body.overlap_seconds)
        await conn.execute(
            "UPDATE api_keys SET expires_at = least(coalesce(expires_at, $2), $2)"
            " WHERE id = $1 AND tenant_id = $3",
            key_id,
            retire,
            ctx.tenant_id,
        )
        created = await apikeys.create_key(
            conn,
            ctx.tenant_id,
            old["scope"],
            expires_at=old["expires_at"],
            connection_id=old["connection_id"],
        )
    return ApiKeyCreated(**_out(await _row(conn, ctx, created.id)).model_dump(), key=created.key)
