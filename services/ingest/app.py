"""Ingest app factory: resources opened and closed in ``cleanup_ctx``, nothing at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from connectors.documents import CachedDocuments
from connectors.egress import provider_session
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import create_pool
from crmsync.common.kafka import RenewableProducer, check_topics, make_producer, start_with_retry
from crmsync.common.metrics import set_build_info
from crmsync.common.partitioner import CachedMurmur2Partitioner
from crmsync.common.problems import router_problems
from crmsync.common.settings import ConfigError, topic_name
from crmsync.common.web import add_ops_routes
from crmsync.settings.ingest import MAX_RECORD_BYTES, IngestSettings
from schemas import topics
from services.ingest.connections import ConnectionCache
from services.ingest.handlers import Ingest
from services.ingest.handshakes import HandshakeInbox
from services.ingest.quotas import QuotaKeeper

SERVICE = "ingest"
PRODUCER = web.AppKey("producer", RenewableProducer)
CACHE = web.AppKey("cache", ConnectionCache)
QUOTAS = web.AppKey("quotas", QuotaKeeper)
DOCUMENTS = web.AppKey("documents", CachedDocuments)
HANDSHAKES = web.AppKey("handshakes", HandshakeInbox)
log = logging.getLogger(__name__)

# aiokafka keeps one open batch per partition and one produce request in flight per broker,
# so a partition moves at most one batch per round trip. At its default (16 KiB: eight
# envelopes of a 1 KiB webhook) a busy connection got eight webhooks acknowledged per round
# trip and the rest waited for room, so throughput fell with Kafka's latency (bench: ~3,300/s
# at best, a few hundred/s when the broker slowed down). Half the broker's default
# message.max.bytes (1 MiB) lets a round trip carry everything that arrived meanwhile.
PRODUCER_MAX_BATCH_BYTES = 512 * 1024


def create_app(
    settings: IngestSettings,
    *,
    producer: RenewableProducer | None = None,
    pool: asyncpg.Pool | None = None,
) -> web.Application:
    try:
        keyring = KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
    # aiohttp stops reading and raises 413 as soon as a body exceeds client_max_size.
    app = web.Application(
        client_max_size=settings.ingest_max_body_bytes, middlewares=[router_problems]
    )
    set_build_info(SERVICE)

    async def database(app: web.Application) -> AsyncIterator[None]:
        owned = pool is None
        db = pool or await create_pool(settings.database_url, max_size=2)
        cache = ConnectionCache(
            db, keyring, refresh_seconds=settings.ingest_connection_refresh_seconds
        )
        app[CACHE] = cache
        app[HANDSHAKES] = HandshakeInbox(db, keyring)
        # Not ready until loaded; if Postgres is down now, the refresh loop keeps trying.
        await cache.refresh()
        refresher = asyncio.create_task(cache.run(), name="connection-cache")
        keeper = app[QUOTAS] = QuotaKeeper(db, sync_seconds=settings.ingest_quota_sync_seconds)
        await keeper.sync()
        syncer = asyncio.create_task(keeper.run(), name="quota-sync")
        yield
        for task in (refresher, syncer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # What was counted since the last sync still counts towards the minute.
        await keeper.sync()
        if owned:
            await db.close()

    async def kafka_producer(app: web.Application) -> AsyncIterator[None]:
        owned = producer is None
        # Renewed when the broker lost its idempotence state (a Kafka restart): the old
        # one would answer 503 to every request until ingest restarted (aiokafka #1017).
        app[PRODUCER] = producer or RenewableProducer(
            lambda: make_producer(
                settings.kafka_bootstrap_servers,
                max_batch_size=PRODUCER_MAX_BATCH_BYTES,
                # What its topics take (schemas.topics): a 1 MiB body's envelope is ~1.4 MiB.
                max_request_size=MAX_RECORD_BYTES,
                partitioner=CachedMurmur2Partitioner(),
            )
        )
        if owned:
            await start_with_retry(
                app[PRODUCER].start,
                "ingest producer",
                within_seconds=settings.ingest_kafka_start_timeout_seconds,
                log=log,
            )
        yield
        if owned:
            # After in-flight requests finished (aiohttp drains them first): flush and close.
            await app[PRODUCER].stop()

    async def documents(app: web.Application) -> AsyncIterator[None]:
        # PayPal's certificates: fetched under the same egress rules as provider calls.
        session = provider_session(allow_private=settings.allow_private_provider_urls)
        app[DOCUMENTS] = CachedDocuments(
            session,
            allow_private=settings.allow_private_provider_urls,
            trust_anchors_pem=settings.paypal_trust_anchors(),
        )
        yield
        await session.close()

    app.cleanup_ctx.extend([database, kafka_producer, documents])

    # All are opened in cleanup_ctx, after the routes exist: handlers look them up late.
    ingest = Ingest(
        settings,
        cache_of=lambda: app[CACHE],
        producer_of=lambda: app[PRODUCER],
        quotas_of=lambda: app[QUOTAS],
        documents_of=lambda: app[DOCUMENTS],
        handshakes_of=lambda: app[HANDSHAKES],
    )
    app.router.add_post("/webhooks/{provider}/{connection_id}", ingest.webhook)
    app.router.add_post("/v1/changes", ingest.changes)

    async def kafka_ready() -> None:
        await check_topics(
            app[PRODUCER].producer.client,
            [topic_name(settings, t.name) for t in (topics.WEBHOOKS_RAW, topics.CHANGES_INTERNAL)],
        )

    async def connections_ready() -> None:
        if not app[CACHE].loaded:
            raise RuntimeError("connection cache not loaded yet (is PostgreSQL reachable?)")

    add_ops_routes(app, SERVICE, {"kafka": kafka_ready, "connections": connections_ready})
    return app
