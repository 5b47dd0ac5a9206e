"""The tenant an operation acts for: what a caller holding only an API key can learn of
it (the CLI's remote mode checks ``--tenant`` and ``TENANT/NAME`` against it)."""

from __future__ import annotations

from crmsync.application.context import Context
from crmsync.application.errors import NotFoundError
from crmsync.application.models import TenantOut
from crmsync.common.db import Conn


async def current(conn: Conn, ctx: Context) -> TenantOut:
    row = await conn.fetchrow(
        "SELECT id, slug, name, created_at FROM tenants WHERE id = $1", ctx.tenant_id
    )
    if row is None:  # a key outlives no tenant (ON DELETE CASCADE); a context might
        raise NotFoundError(f"no tenant {ctx.tenant_id}")
    return TenantOut(id=row["id"], slug=row["slug"], name=row["name"], created_at=row["created_at"])
