"""A running ingest app on the real Kafka and PostgreSQL, plus a tap on its topics."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition

from crmsync.common.connections import CreatedConnection, add_webhook_secret, create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from crmsync.common.settings import parse_settings
from crmsync.settings.ingest import IngestSettings
from services.ingest.app import create_app

PUBLIC_BASE = "https://hooks.example.com"


class Tap:
    """Reads what lands on a topic from now on, filtered by record key."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )

    async def start(self) -> None:
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic)
        assert partitions, f"topic {self.topic} does not exist"
        tps = [TopicPartition(self.topic, p) for p in partitions]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end offsets now, before anything is produced
            await self.consumer.position(tp)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def read(self, key: bytes, count: int, within: float = 10.0) -> list[Any]:
        found: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(found) < count and loop.time() < deadline:
            batch = await self.consumer.getmany(timeout_ms=200)
            found.extend(r for records in batch.values() for r in records if r.key == key)
        return found

    async def nothing_for(self, key: bytes, wait: float = 1.0) -> bool:
        return await self.read(key, 1, within=wait) == []


@asynccontextmanager
async def tapping(bootstrap: str, topic: str) -> AsyncIterator[Tap]:
    """A started Tap on ``topic``, stopped on exit."""
    tap = Tap(bootstrap, topic)
    await tap.start()
    try:
        yield tap
    finally:
        await tap.stop()


@dataclass
class Ingest:
    client: TestClient[web.Request, web.Application]
    pool: asyncpg.Pool
    keyring: KeyRing
    settings: IngestSettings

    async def connect(
        self,
        provider: str,
        secret: str | None,
        *,
        tenant: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> CreatedConnection:
        async with self.pool.acquire() as conn:
            return await create_connection(
                conn,
                self.keyring,
                tenant=tenant or f"t-{uuid.uuid4().hex[:10]}",
                provider=provider,
                name=provider,
                webhook_secret=secret,
                settings=settings,
            )

    async def rotate(
        self, connection_id: uuid.UUID, new_secret: str, retire_current_at: datetime
    ) -> None:
        async with self.pool.acquire() as conn:
            await add_webhook_secret(
                conn,
                self.keyring,
                connection_id,
                new_secret,
                retire_current_at=retire_current_at,
            )

    async def post_change(self, api_key: str) -> None:
        """One internal change (a job) published with ``api_key``, as an ERP would: 202."""
        change = {
            "event_id": "e1",
            "entity_type": "job",
            "op": "upsert",
            "external_id": "job-1",
            "occurred_at": "2026-11-21T10:00:00+00:00",
            "data": {"title": "Fix the boiler"},
        }
        resp = await self.client.post(
            "/v1/changes", json=change, headers={"Authorization": f"Bearer {api_key}"}
        )
        assert resp.status == 202, await resp.text()


async def running_ingest(
    database_url: str, kafka_bootstrap: str, **overrides: Any
) -> AsyncIterator[Ingest]:
    settings = parse_settings(
        IngestSettings,
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        ingest_public_base_url=PUBLIC_BASE,
        **overrides,
    )
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    pool = await create_pool(database_url, max_size=2)
    client = TestClient(TestServer(create_app(settings, pool=pool)))
    await client.start_server()
    try:
        yield Ingest(client, pool, keyring, settings)
    finally:
        await client.close()
        await pool.close()
