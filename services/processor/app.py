"""Processor app factory: a faust app whose agents apply batches to Postgres.

faust's exactly-once mode is not used (it has open bugs); exactly-once *effect* comes from
the dedup table written in the same transaction as the change, and the outbox. The
worker's HTTP side is our own (health, readiness, metrics), and owns the shared
resources: the Postgres pool, and the producer and task of the outbox relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
import asyncpg
import faust
import mode
from aiohttp import web
from aiokafka import AIOKafkaClient, AIOKafkaProducer

from connectors.egress import provider_session
from connectors.runtime import Clients
from crmsync.application.connection_runtime import stored_clients
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import create_pool, keep_session, ping
from crmsync.common.kafka import (
    RenewableProducer,
    check_topics,
    make_producer,
    report_consumer_lag,
    start_with_retry,
)
from crmsync.common.metrics import set_build_info
from crmsync.common.partitioner import Murmur2Partitioner
from crmsync.common.settings import ConfigError, topic_name
from crmsync.common.supervise import TaskHealth, supervise
from crmsync.common.web import add_ops_routes
from crmsync.settings.processor import ProcessorSettings
from schemas import topics
from services.processor.batches import take_batches
from services.processor.consumer import install as install_consumer
from services.processor.deadletters import Source
from services.processor.guard import BatchGuard
from services.processor.housekeeping import run_housekeeping
from services.processor.lanes import Lanes, OrderedAcks, forgetting_unfinished
from services.processor.normalize import Normalizer
from services.processor.outbox import OutboxRelay
from services.processor.pipeline import Processor
from services.processor.sweep import WaitingSweep

SERVICE = "processor"
# Topics whose records are applied to Postgres (InternalChange events).
APPLY_TOPICS = (topics.CHANGES_INTERNAL, topics.CHANGES_NORMALIZED)
# Every topic the processor consumes: provider webhooks are normalised first.
SOURCE_TOPICS = (topics.WEBHOOKS_RAW, *APPLY_TOPICS)
log = logging.getLogger(__name__)


# The processor produces whole batches (``send_all``: a lane's normalised changes, a round
# of the outbox relay), every record appended before aiokafka's sender runs, so lingering
# adds nothing to a batch and holds each one back: make_producer's 2 ms suits ingest's
# one-record sends. send_all against the local Kafka, linger 2 against 0 ms, 9 alternated
# pairs at load 7-14: p50 of one record 3.8 → 1.5 ms, of ten 5.0 → 2.3 ms, of forty
# 8.2 → 4.2 ms, and less CPU per record (bench/README.md, "Eighth round").
BATCH_LINGER_MS = 0


def batch_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    """The producer of the normalize lanes and the outbox relay: durable, keyed as the Java
    client keys, sending each batch as soon as it is appended."""
    return make_producer(
        bootstrap_servers, partitioner=Murmur2Partitioner(), linger_ms=BATCH_LINGER_MS
    )


def broker_url(bootstrap_servers: str) -> str:
    """faust spells a broker list as ``kafka://h1:9092;kafka://h2:9092``."""
    return ";".join(f"kafka://{s.strip()}" for s in bootstrap_servers.split(",") if s.strip())


class Runtime(mode.Service):  # type: ignore[misc]
    """Postgres pool, outbox relay and the HTTP server (/healthz, /readyz, /metrics)."""

    def __init__(self, settings: ProcessorSettings, **kwargs: Any) -> None:
        self.settings = settings
        try:
            self.keyring = KeyRing.parse(settings.master_keys.get_secret_value())
        except CryptoError as exc:
            raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
        self.pool: asyncpg.Pool | None = None
        self.kafka: AIOKafkaClient | None = None
        self.producer: RenewableProducer | None = None
        self.runner: web.AppRunner | None = None
        self.relay_task: asyncio.Task[None] | None = None
        self.housekeeping_task: asyncio.Task[None] | None = None
        self.sweep_task: asyncio.Task[None] | None = None
        self.sweep: WaitingSweep | None = None
        self.lag_task: asyncio.Task[None] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.clients: Clients | None = None
        self.ready = asyncio.Event()
        # One per supervised loop and per agent: /readyz names whichever keeps failing.
        self.health: dict[str, TaskHealth] = {
            name: TaskHealth(name)
            for name in (
                "outbox-relay",
                "housekeeping",
                "waiting-sweep",
                "normalize-webhooks",
                *(f"apply-{t.name}" for t in APPLY_TOPICS),
            )
        }
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        s = self.settings
        # No reset query on release, a round trip per transaction: nothing the processor
        # runs on this pool leaves session state, and the outbox relay unlistens its
        # connection before giving it back (crmsync.common.db.keep_session).
        self.pool = await create_pool(
            s.database_url,
            max_size=s.processor_db_pool_size,
            reset=keep_session,
        )
        self.http = provider_session(allow_private=s.allow_private_provider_urls)
        self.clients = stored_clients(self.pool, self.keyring, self.http)
        self.kafka = AIOKafkaClient(bootstrap_servers=s.kafka_bootstrap_servers)
        self.producer = RenewableProducer(lambda: batch_producer(s.kafka_bootstrap_servers))
        for what, start in (("processor", self.kafka.bootstrap), ("relay", self.producer.start)):
            await start_with_retry(
                start, what, within_seconds=s.processor_kafka_start_timeout_seconds, log=log
            )
        relay = OutboxRelay(
            self.pool, self.producer, topic=topic_name(s, topics.RECORDS_CHANGED.name)
        )
        pool = self.pool
        self.relay_task = asyncio.create_task(
            supervise(relay.run, health=self.health["outbox-relay"], log=log),
            name="outbox-relay",
        )
        self.housekeeping_task = asyncio.create_task(
            supervise(
                lambda: run_housekeeping(
                    pool, s.processor_dedup_retention_days, s.processor_sync_log_retention_days
                ),
                health=self.health["housekeeping"],
                log=log,
            ),
            name="housekeeping",
        )
        self.sweep = WaitingSweep(
            Processor(pool),
            pool,
            wait_seconds=s.processor_reference_wait_seconds,
        )
        self.sweep_task = asyncio.create_task(
            supervise(self.sweep.run, health=self.health["waiting-sweep"], log=log),
            name="waiting-sweep",
        )
        self.lag_task = asyncio.create_task(
            report_consumer_lag(
                s.kafka_bootstrap_servers,
                s.processor_app_id,
                [topic_name(s, t.name) for t in SOURCE_TOPICS],
                log,
            ),
            name="consumer-lag",
        )
        app = web.Application()
        checks = {"postgres": self._postgres_ready, "kafka": self._kafka_ready}
        add_ops_routes(app, SERVICE, checks | {n: h.check for n, h in self.health.items()})
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        await web.TCPSite(self.runner, s.processor_host, s.processor_port).start()
        self.ready.set()
        log.info("%s listening on http://%s:%d", SERVICE, s.processor_host, s.processor_port)

    async def on_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        for task in (self.relay_task, self.housekeeping_task, self.sweep_task, self.lag_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for closing in (
            self.producer.stop if self.producer else None,
            self.kafka.close if self.kafka else None,
        ):
            if closing is not None:
                await closing()
        if self.http is not None:
            await self.http.close()
        if self.pool is not None:
            await self.pool.close()

    async def _postgres_ready(self) -> None:
        if self.pool is None:
            raise RuntimeError("starting")
        await ping(self.pool)

    async def _kafka_ready(self) -> None:
        if self.kafka is None:
            raise RuntimeError("starting")
        await check_topics(self.kafka, [topic_name(self.settings, t.name) for t in SOURCE_TOPICS])


def source_of(event: Any) -> Source:
    m = event.message
    return Source(m.topic, m.partition, m.offset, m.key, m.value)


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
        # A crashed worker's partitions move to the others after this long without a
        # heartbeat: 10 s (Kafka's default is 45 s) keeps a SIGKILL from stalling them.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        autodiscover=False,
        web_host=settings.processor_host,
        web_port=settings.processor_port,
    )
    # One task per fetched batch instead of four per record, and the fetch wait faust
    # writes into its consumer made a setting (services.processor.consumer).
    install_consumer(app, fetch_max_wait_ms=settings.processor_fetch_max_wait_ms)
    runtime = Runtime(settings)
    app.web_server(runtime)

    normalized_topic = topic_name(settings, topics.CHANGES_NORMALIZED.name)

    async def normalize(stream: Any) -> None:
        await runtime.ready.wait()
        assert runtime.pool is not None  # noqa: S101 - ready is set after the pool opens
        assert runtime.producer is not None  # noqa: S101
        producer = runtime.producer
        normalizer = Normalizer(runtime.pool, runtime.clients)
        guard = BatchGuard(
            runtime.pool, runtime.health["normalize-webhooks"], topic=topics.WEBHOOKS_RAW.name
        )

        async def normalize_all(sources: Sequence[Source]) -> None:
            outputs = await normalizer.handle(sources)
            # Done only once every normalised change is acknowledged.
            await producer.send_all(normalized_topic, [(o.key, o.value) for o in outputs])

        async def handle(events: Sequence[Any]) -> None:
            await guard.run([source_of(e) for e in events], normalize_all)

        # One lane per connection (the records' key): one connection's hydrations, waiting
        # for its provider's budget, never hold up another's (services.processor.lanes).
        acks = OrderedAcks(stream.ack)
        lanes = Lanes(
            handle,
            acks,
            max_batch=settings.processor_batch_size,
            in_flight=settings.processor_normalize_in_flight,
        )
        # Acknowledgement is the lanes': an event counts as done only once normalised.
        stream.enable_acks = False
        with forgetting_unfinished(stream, acks):
            await lanes.run(stream.events())

    raw = app.topic(
        topic_name(settings, topics.WEBHOOKS_RAW.name), key_serializer="raw", value_serializer="raw"
    )
    app.agent(raw, name="normalize-webhooks")(normalize)

    for spec in APPLY_TOPICS:
        name = topic_name(settings, spec.name)
        source = app.topic(name, key_serializer="raw", value_serializer="raw")

        async def apply(stream: Any, kind: str = spec.name) -> None:
            await runtime.ready.wait()
            assert runtime.pool is not None  # noqa: S101 - ready is set after the pool opens
            health = runtime.health[f"apply-{kind}"]
            processor = Processor(
                runtime.pool,
                concurrency=settings.processor_apply_concurrency,
                health=health,
                on_commit=runtime.sweep.after_commit if runtime.sweep is not None else None,
            )
            guard = BatchGuard(runtime.pool, health, topic=kind)

            async def handle(sources: Sequence[Source]) -> None:
                await processor.handle(kind, sources)

            async with take_batches(
                stream,
                settings.processor_batch_size,
                within=settings.processor_batch_window_seconds,
                quiet=settings.processor_batch_quiet_seconds,
            ) as batches:
                async for events in batches:
                    await guard.run([source_of(e) for e in events], handle)

        app.agent(source, name=f"apply-{spec.name}")(apply)
    return app
