"""Each service's app factory against the real Kafka and PostgreSQL: ready when they are."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crmsync.common.db import DatabaseUnavailableError
from crmsync.common.settings import parse_settings
from crmsync.settings.admin import AdminSettings
from crmsync.settings.ingest import IngestSettings
from crmsync.settings.outbound import OutboundSettings
from services.admin.app import create_app as create_admin
from services.ingest.app import create_app as create_ingest
from services.outbound.app import create_app as create_outbound


async def _serve(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _assert_ready(app: web.Application, *checks: str) -> None:
    async for client in _serve(app):
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 200, body
        assert set(body["checks"]) == set(checks)
        metrics = await (await client.get("/metrics")).text()
        assert "crmsync_build_info{" in metrics


@pytest.mark.usefixtures("pipeline_topics")
async def test_ingest_is_ready_with_kafka_its_topics_and_connections(
    database_url: str, kafka_bootstrap: str
) -> None:
    settings = parse_settings(
        IngestSettings, database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap
    )
    await _assert_ready(create_ingest(settings), "kafka", "connections")


async def test_admin_is_ready_with_postgres(database_url: str) -> None:
    settings = parse_settings(AdminSettings, database_url=database_url)
    await _assert_ready(create_admin(settings), "postgres")


@pytest.mark.usefixtures("pipeline_topics")
async def test_outbound_is_ready_with_kafka_and_postgres(
    database_url: str, kafka_bootstrap: str
) -> None:
    settings = parse_settings(
        OutboundSettings, database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap
    )
    await _assert_ready(create_outbound(settings), "postgres", "kafka", "pushing")


async def test_admin_fails_to_start_when_postgres_is_unreachable() -> None:
    settings = parse_settings(AdminSettings, database_url="postgresql://x:y@127.0.0.1:1/z")
    server = TestServer(create_admin(settings))
    try:
        with pytest.raises(DatabaseUnavailableError):
            await server.start_server()
    finally:
        await server.close()
