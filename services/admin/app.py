"""Admin app factory: the /v1 operator API, its OpenAPI document, and the ops routes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from crmsync.common.apikeys import LastUsedRecorder
from crmsync.common.db import create_pool, ping
from crmsync.common.metrics import set_build_info
from crmsync.common.web import add_ops_routes
from crmsync.settings.admin import AdminSettings, keyring_from
from services.admin.api import SERVICES, Services, add_routes, openapi, problems_middleware
from services.admin.console import add_console
from services.admin.routes import routes

SERVICE = "admin"
POOL = web.AppKey("pool", asyncpg.Pool)
API_VERSION = "1.0.0"


def create_app(
    settings: AdminSettings,
    *,
    pool: asyncpg.Pool | None = None,
    last_used_flush_seconds: float | None = None,
) -> web.Application:
    app = web.Application(middlewares=[problems_middleware])
    set_build_info(SERVICE)
    keyring = keyring_from(settings)
    table = routes()
    document = openapi(table, title="crmsync admin API", version=API_VERSION)

    async def database(app: web.Application) -> AsyncIterator[None]:
        owned = pool is None
        app[POOL] = pool or await create_pool(
            settings.database_url, max_size=settings.admin_db_pool_size
        )
        recorder = (
            LastUsedRecorder(app[POOL])
            if last_used_flush_seconds is None
            else LastUsedRecorder(app[POOL], interval_seconds=last_used_flush_seconds)
        )
        app[SERVICES] = Services(
            pool=app[POOL],
            keyring=keyring,
            public_base_url=settings.ingest_public_base_url,
            kafka=settings.kafka_target(),
            recorder=recorder,
            allow_private_provider_urls=settings.allow_private_provider_urls,
        )
        flusher = asyncio.create_task(recorder.run(), name="api-key-last-used")
        yield
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await recorder.flush()
        if owned:
            await app[POOL].close()

    app.cleanup_ctx.append(database)

    async def postgres_ready() -> None:
        await ping(app[POOL])

    async def openapi_json(_request: web.Request) -> web.Response:
        return web.json_response(document)

    add_ops_routes(app, SERVICE, {"postgres": postgres_ready})
    app.router.add_get("/openapi.json", openapi_json)
    add_routes(app, table)
    add_console(app, table, keyring)
    return app
