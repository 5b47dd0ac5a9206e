"""Processor app factory: a faust app whose HTTP side is our own ops server.

faust's exactly-once mode is not used (it has open bugs); exactly-once *effect* comes from
idempotent Postgres writes and an outbox, added by the processing agents.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import faust
import mode
from aiohttp import web
from aiokafka import AIOKafkaClient

from crmsync.common.db import create_pool, ping
from crmsync.common.kafka import check_topics, start_with_retry
from crmsync.common.metrics import set_build_info
from crmsync.common.web import add_ops_routes
from schemas import topics
from services.processor.settings import ProcessorSettings

SERVICE = "processor"
log = logging.getLogger(__name__)


def broker_url(bootstrap_servers: str) -> str:
    """faust spells a broker list as ``kafka://h1:9092;kafka://h2:9092``."""
    return ";".join(f"kafka://{s.strip()}" for s in bootstrap_servers.split(",") if s.strip())


class OpsServer(mode.Service):  # type: ignore[misc]
    """The worker's HTTP server (/healthz, /readyz, /metrics) and the clients it checks."""

    def __init__(self, settings: ProcessorSettings, **kwargs: Any) -> None:
        self.settings = settings
        self.pool: asyncpg.Pool | None = None
        self.kafka: AIOKafkaClient | None = None
        self.runner: web.AppRunner | None = None
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        s = self.settings
        self.pool = await create_pool(s.database_url, max_size=s.processor_db_pool_size)
        self.kafka = AIOKafkaClient(bootstrap_servers=s.kafka_bootstrap_servers)
        await start_with_retry(
            self.kafka.bootstrap,
            SERVICE,
            within_seconds=s.processor_kafka_start_timeout_seconds,
            log=log,
        )
        app = web.Application()
        add_ops_routes(app, SERVICE, {"postgres": self._postgres_ready, "kafka": self._kafka_ready})
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, s.processor_host, s.processor_port).start()
        log.info("%s listening on http://%s:%d", SERVICE, s.processor_host, s.processor_port)

    async def on_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.kafka is not None:
            await self.kafka.close()
        if self.pool is not None:
            await self.pool.close()

    async def _postgres_ready(self) -> None:
        if self.pool is None:
            raise RuntimeError("starting")
        await ping(self.pool)

    async def _kafka_ready(self) -> None:
        if self.kafka is None:
            raise RuntimeError("starting")
        await check_topics(self.kafka, [topics.WEBHOOKS_RAW.name, topics.CHANGES_INTERNAL.name])


def create_app(settings: ProcessorSettings) -> faust.App:
    set_build_info(SERVICE)
    # faust creates only the last level of its data directory.
    settings.processor_data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.processor_app_id,
        broker=broker_url(settings.kafka_bootstrap_servers),
        # No faust tables hold state: Postgres is the state, so nothing to recover.
        store="memory://",
        # faust writes a data directory even with the memory store; keep it out of the cwd.
        datadir=str(settings.processor_data_dir / settings.processor_app_id),
        topic_replication_factor=settings.kafka_replication_factor,
        producer_acks=-1,
        autodiscover=False,
        web_host=settings.processor_host,
        web_port=settings.processor_port,
    )
    app.web_server(OpsServer(settings))
    return app
