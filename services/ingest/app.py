"""Ingest app factory: resources opened and closed in ``cleanup_ctx``, nothing at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer

from crmsync.common.kafka import check_topics, make_producer, start_with_retry
from crmsync.common.metrics import set_build_info
from crmsync.common.web import add_ops_routes
from schemas import topics
from services.ingest.settings import IngestSettings

SERVICE = "ingest"
PRODUCER = web.AppKey("producer", AIOKafkaProducer)
log = logging.getLogger(__name__)


def create_app(
    settings: IngestSettings, *, producer: AIOKafkaProducer | None = None
) -> web.Application:
    app = web.Application()
    set_build_info(SERVICE)

    async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
        owned = producer is None
        app[PRODUCER] = producer or make_producer(settings.kafka_bootstrap_servers)
        if owned:
            await start_with_retry(
                app[PRODUCER].start,
                "ingest producer",
                within_seconds=settings.ingest_kafka_start_timeout_seconds,
                log=log,
            )
        yield
        if owned:
            await app[PRODUCER].stop()

    app.cleanup_ctx.append(kafka_producer)

    async def kafka_ready() -> None:
        await check_topics(
            app[PRODUCER].client, [topics.WEBHOOKS_RAW.name, topics.CHANGES_INTERNAL.name]
        )

    add_ops_routes(app, SERVICE, {"kafka": kafka_ready})
    return app
