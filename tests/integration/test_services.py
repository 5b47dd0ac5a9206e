"""Each service's app factory against the real Kafka and PostgreSQL: ready when they are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crmsync.common.db import DatabaseUnavailableError
from crmsync.common.settings import CommonSettings, parse_settings
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
@pytest.mark.parametrize(
    ("settings_class", "create_app", "checks"),
    [
        pytest.param(IngestSettings, create_ingest, ("kafka", "connections"), id="ingest"),
        pytest.param(
            OutboundSettings, create_outbound, ("postgres", "kafka", "pushing"), id="outbound"
        ),
    ],
)
async def test_a_service_on_kafka_is_ready_with_kafka_its_topics_and_its_database(
    database_url: str,
    kafka_bootstrap: str,
    settings_class: type[CommonSettings],
    create_app: Callable[[Any], web.Application],
    checks: tuple[str, ...],
) -> None:
    settings = parse_settings(
        settings_class, database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap
    )
    await _assert_ready(create_app(settings), *checks)


async def test_admin_is_ready_with_postgres(database_url: str) -> None:
    settings = parse_settings(AdminSettings, database_url=database_url)
    await _assert_ready(create_admin(settings), "postgres")


async def test_admin_fails_to_start_when_postgres_is_unreachable() -> None:
    settings = parse_settings(AdminSettings, database_url="postgresql://x:y@127.0.0.1:1/z")
    server = TestServer(create_admin(settings))
    try:
        with pytest.raises(DatabaseUnavailableError):
            await server.start_server()
    finally:
        await server.close()
