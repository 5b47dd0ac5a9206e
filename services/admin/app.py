"""Admin app factory. The /v1 operator API is added on top of these resources."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from crmsync.common.db import create_pool, ping
from crmsync.common.metrics import set_build_info
from crmsync.common.web import add_ops_routes
from services.admin.settings import AdminSettings

SERVICE = "admin"
POOL = web.AppKey("pool", asyncpg.Pool)


def create_app(settings: AdminSettings, *, pool: asyncpg.Pool | None = None) -> web.Application:
    app = web.Application()
    set_build_info(SERVICE)

    async def database(app: web.Application) -> AsyncIterator[None]:
        owned = pool is None
        app[POOL] = pool or await create_pool(
            settings.database_url, max_size=settings.admin_db_pool_size
        )
        yield
        if owned:
            await app[POOL].close()

    app.cleanup_ctx.append(database)

    async def postgres_ready() -> None:
        await ping(app[POOL])

    add_ops_routes(app, SERVICE, {"postgres": postgres_ready})
    return app
