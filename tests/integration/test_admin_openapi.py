"""The OpenAPI document is the contract: schemathesis generates requests for every
operation from /openapi.json and checks that the running API (real PostgreSQL) answers
none with a 5xx, an undocumented status, or a body that violates the document.

Bounded: a few examples per operation, derandomised, so the run is short and the same
every time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import hypothesis
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from crmsync.common.apikeys import create_key, ensure_tenant
from crmsync.common.db import create_pool
from crmsync.common.settings import parse_settings
from crmsync.localstack.ports import free_port
from crmsync.settings.admin import AdminSettings
from services.admin.app import create_app
from services.admin.routes import routes

# Examples per operation: 38 operations x 10 take about 10 s here. A one-off run with 200
# per operation (90 s) found nothing more once NUL characters were refused.
EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
async def served(database_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[str, str]]:
    """The admin app on a real port, and an admin key with a connection and records."""
    # Nothing is written to Kafka: no generated id names a connection or dead letter that
    # exists. The ledger reads it, under a prefix no topic has: an empty pipeline.
    settings = parse_settings(
        AdminSettings,
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=f"fuzz{uuid.uuid4().hex[:8]}.",
    )
    pool = await create_pool(database_url, max_size=4)
    async with pool.acquire() as conn:
        tenant = await ensure_tenant(conn, "fuzz")
        key = await create_key(conn, tenant, "admin")
        await conn.execute(
            "INSERT INTO customers (tenant_id, data) VALUES ($1, $2)",
            tenant,
            {"name": "Ann", "email": "ann@example.com"},
        )
    runner = web.AppRunner(create_app(settings, pool=pool))
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", key.key
    finally:
        await runner.cleanup()
        await pool.close()


def _fuzz(base_url: str, key: str) -> tuple[int, list[str]]:
    """Run every operation; return how many were run and what failed."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, session=session, headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
            failures.append(f"{operation.label}: {exc}")
    return operations, failures


async def test_no_operation_answers_5xx_or_outside_its_schema(served: tuple[str, str]) -> None:
    base_url, key = served
    operations, failures = await asyncio.to_thread(_fuzz, base_url, key)
    assert operations == len(routes())
    assert not failures, "\n\n".join(failures)


async def test_the_document_is_openapi_3_1_from_the_models(served: tuple[str, str]) -> None:
    base_url, _ = served
    document = (
        await asyncio.to_thread(requests.get, f"{base_url}/openapi.json", timeout=10)
    ).json()
    assert document["openapi"] == "3.1.0"
    create = document["paths"]["/v1/connections"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert body["additionalProperties"] is False  # unknown fields are refused
    assert set(create["responses"]) >= {"201", "401", "403", "409", "422"}
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    path_param = document["paths"]["/v1/connections/{connection_id}"]["get"]["parameters"][0]
    assert path_param["schema"] == {"type": "string", "format": "uuid"}
