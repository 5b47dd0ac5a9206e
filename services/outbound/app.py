"""Outbound app factory: its HTTP side serves health and metrics; pushing runs beside it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaClient

from crmsync.common.db import create_pool, ping
from crmsync.common.kafka import check_topics, start_with_retry
from crmsync.common.metrics import set_build_info
from crmsync.common.settings import topic_name
from crmsync.common.web import add_ops_routes
from schemas import topics
from services.outbound.settings import OutboundSettings

SERVICE = "outbound"
POOL = web.AppKey("pool", asyncpg.Pool)
KAFKA = web.AppKey("kafka", AIOKafkaClient)
log = logging.getLogger(__name__)


def create_app(settings: OutboundSettings, *, pool: asyncpg.Pool | None = None) -> web.Application:
    app = web.Application()
    set_build_info(SERVICE)

    async def database(app: web.Application) -> AsyncIterator[None]:
        owned = pool is None
        app[POOL] = pool or await create_pool(
            settings.database_url, max_size=settings.outbound_db_pool_size
        )
        yield
        if owned:
            await app[POOL].close()

    async def kafka(app: web.Application) -> AsyncIterator[None]:
        client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await start_with_retry(
            client.bootstrap,
            "outbound",
            within_seconds=settings.outbound_kafka_start_timeout_seconds,
            log=log,
        )
        app[KAFKA] = client
        yield
        await client.close()

    app.cleanup_ctx.extend([database, kafka])

    async def postgres_ready() -> None:
        await ping(app[POOL])

    async def kafka_ready() -> None:
        await check_topics(app[KAFKA], [topic_name(settings, topics.RECORDS_CHANGED.name)])

    add_ops_routes(app, SERVICE, {"postgres": postgres_ready, "kafka": kafka_ready})
    return app
