"""Outbound app factory: the HTTP side serves health and metrics; the consumer, the push
worker and the stats loop run beside it, opened and closed in cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer

from connectors.egress import provider_session
from connectors.limits import BreakerPolicy
from crmsync.application.connection_runtime import stored_clients
from crmsync.application.notifier import Notifier, Thresholds
from crmsync.application.sync.jobs import owner_id
from crmsync.application.sync.runner import Observer, SyncRunner
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import create_pool, keep_session, ping
from crmsync.common.kafka import (
    check_topics,
    make_consumer,
    make_producer,
    report_consumer_lag,
    start_with_retry,
)
from crmsync.common.metrics import set_build_info
from crmsync.common.settings import ConfigError, topic_name
from crmsync.common.web import add_ops_routes
from crmsync.settings.outbound import OutboundSettings
from schemas import topics
from services.outbound.handshakes import HandshakeWorker
from services.outbound.pusher import Pusher, PushPolicy
from services.outbound.service import Outbound
from services.outbound.syncs import SyncWorker

SERVICE = "outbound"
POOL = web.AppKey("pool", asyncpg.Pool)
KAFKA = web.AppKey("kafka", AIOKafkaClient)
OUTBOUND = web.AppKey("outbound", Outbound)
TASKS = web.AppKey("tasks", list[asyncio.Task[None]])
log = logging.getLogger(__name__)


def create_app(
    settings: OutboundSettings,
    *,
    pool: asyncpg.Pool | None = None,
    breaker_policy: BreakerPolicy | None = None,
) -> web.Application:
    try:
        keyring = KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
    app = web.Application()
    set_build_info(SERVICE)
    changed = topic_name(settings, topics.RECORDS_CHANGED.name)
    normalized = topic_name(settings, topics.CHANGES_NORMALIZED.name)

    async def database(app: web.Application) -> AsyncIterator[None]:
        owned = pool is None
        # No reset query on release: a round trip per pool query, 23 % of outbound's CPU
        # at 200 webhooks/s (crmsync.common.db.keep_session says when that is safe).
        app[POOL] = pool or await create_pool(
            settings.database_url, max_size=settings.outbound_db_pool_size, reset=keep_session
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

    async def pushing(app: web.Application) -> AsyncIterator[None]:
        consumer, producer = await _start_clients(settings, changed)
        session = provider_session(allow_private=settings.allow_private_provider_urls)
        clients = stored_clients(app[POOL], keyring, session, breaker_policy=breaker_policy)
        outbound = Outbound(
            app[POOL],
            consumer,
            clients,
            Pusher(
                app[POOL],
                clients,
                PushPolicy.from_settings(settings),
                # A target's own edit found by a push's look goes the way a reconciliation's
                # records go: to changes.normalized, through the merge (issue 17).
                observe=Observer(producer, normalized),
            ),
            concurrency=settings.outbound_concurrency,
            lease_seconds=settings.outbound_lease_seconds,
        )
        app[OUTBOUND] = outbound
        tasks = [
            asyncio.create_task(outbound.resilient(name, loop), name=f"outbound-{name}")
            for name, loop in (
                ("consume", outbound.consume),
                ("work", outbound.work),
                ("stats", outbound.stats),
                ("notify", _notifier(settings, app[POOL], session, keyring).run),
                (
                    "handshakes",
                    HandshakeWorker(app[POOL], clients, keyring, outbound.stopping).run,
                ),
            )
        ]
        lag = asyncio.create_task(
            report_consumer_lag(
                settings.kafka_bootstrap_servers, settings.outbound_consumer_group, [changed], log
            ),
            name="outbound-lag",
        )
        syncs = SyncWorker.from_settings(
            settings,
            app[POOL],
            SyncRunner(app[POOL], clients, producer, topic=normalized, owner=owner_id(SERVICE)),
            outbound.stopping,
        )
        if settings.outbound_sync_concurrency > 0:
            tasks.append(
                asyncio.create_task(outbound.resilient("syncs", syncs.run), name="outbound-syncs")
            )
        app[TASKS] = tasks
        yield
        # Graceful: stop claiming, finish pushes in flight, then commit and leave the group.
        await outbound.drain()
        await syncs.stop()
        for task in [*tasks, lag]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await consumer.stop()
        await producer.stop()
        await session.close()

    app.cleanup_ctx.extend([database, kafka, pushing])

    async def postgres_ready() -> None:
        await ping(app[POOL])

    async def kafka_ready() -> None:
        await check_topics(app[KAFKA], [changed])

    async def loops_alive() -> None:
        await _loops_alive(app)

    add_ops_routes(
        app, SERVICE, {"postgres": postgres_ready, "kafka": kafka_ready, "pushing": loops_alive}
    )
    return app


def _notifier(
    settings: OutboundSettings,
    pool: asyncpg.Pool,
    session: aiohttp.ClientSession,
    keyring: KeyRing,
) -> Notifier:
    """Operational notifications to the tenants' endpoints, through the provider session's
    egress guard (an endpoint URL is the tenant's input like a provider URL)."""
    return Notifier(
        pool,
        session,
        keyring,
        thresholds=Thresholds(
            circuit_minutes=settings.outbound_notify_circuit_minutes,
            dead_letters=settings.outbound_notify_dead_letters,
        ),
        interval=settings.outbound_notify_interval_seconds,
    )


async def _loops_alive(app: web.Application) -> None:
    for task in app.get(TASKS, []):
        if task.done():
            raise RuntimeError(f"{task.get_name()} stopped")
    if OUTBOUND in app:
        for health in app[OUTBOUND].health.values():
            await health.check()


async def _start_clients(
    settings: OutboundSettings, changed: str
) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
    """The records.changed consumer and the producer of backfills and reconciliations."""
    consumer = make_consumer(
        settings.kafka_bootstrap_servers, changed, group_id=settings.outbound_consumer_group
    )
    producer = make_producer(settings.kafka_bootstrap_servers)
    for name, start in (("consumer", consumer.start), ("producer", producer.start)):
        await start_with_retry(
            start,
            f"outbound {name}",
            within_seconds=settings.outbound_kafka_start_timeout_seconds,
            log=log,
        )
    return consumer, producer
