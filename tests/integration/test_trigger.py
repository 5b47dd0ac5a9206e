"""``crmsync trigger`` (crmsync.application.trigger) against a real ingest, Kafka and
PostgreSQL: one sample per provider, sent twice, signed with the connection's own secret,
accepted by ingest both times, and applied by the processor as two events (the second is
not dropped as a duplicate). Thin providers' resources are fetched through the fixture's
client port, as tests/integration/test_webhook_pipeline.py does."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors import samples
from connectors.registry import connector
from crmsync.application import trigger
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.errors import InvalidError, NotFoundError
from crmsync.application.models import TriggerRequest
from crmsync.common.connections import create_connection
from schemas import topics
from services.processor.deadletters import Source
from services.processor.normalize import Normalizer
from tests.ingest_harness import PUBLIC_BASE, Ingest, Tap
from tests.integration.test_webhook_pipeline import (
    FixtureClient,
    FixtureClients,
    run_pipeline,
    settings_for,
)

ROOT = Path(__file__).resolve().parents[2]
# One sample per provider, and the record it must leave applied.
ONE_PER_PROVIDER = {
    "stripe": ("customer.created", "customers"),
    "ascora": ("customer.updated", "customers"),
    "xero": ("contact.update", "customers"),
    "quickbooks": ("customer.create", "customers"),
    "hubspot": ("contact.creation", "customers"),
    "shopify": ("customers.update", "customers"),
}


def _context(ingest: Ingest, tenant_id: uuid.UUID) -> Context:
    return Context(
        tenant_id=tenant_id,
        keyring=ingest.keyring,
        public_base_url=PUBLIC_BASE,
        kafka=KafkaTarget(ingest.settings.kafka_bootstrap_servers),
        actor="cli:test",
    )


def _fixture(provider: str, event: str) -> dict[str, Any]:
    shipped = json.loads((ROOT / "connectors" / provider / "samples" / f"{event}.json").read_text())
    fixture: dict[str, Any] = json.loads((ROOT / shipped["fixture"]).read_text())
    return fixture


async def _connect(pool: asyncpg.Pool, ingest: Ingest, provider: str, body: Any) -> Any:
    async with pool.acquire() as conn:
        return await create_connection(
            conn,
            ingest.keyring,
            tenant=f"t-{uuid.uuid4().hex[:10]}",
            provider=provider,
            name=provider,
            webhook_secret=connector(provider).scheme.generate_secret(),
            settings=settings_for(provider, body),
        )


@pytest.mark.parametrize("provider", sorted(ONE_PER_PROVIDER))
async def test_a_triggered_sample_is_accepted_and_applied_twice_over(
    ingest: Ingest, raw_tap: Tap, provider: str
) -> None:
    event, table = ONE_PER_PROVIDER[provider]
    fixture = _fixture(provider, event)
    created = await _connect(ingest.pool, ingest, provider, fixture["body"])
    ctx = _context(ingest, created.tenant_id)
    base = str(ingest.client.make_url("")).rstrip("/")

    results = []
    for _ in range(2):
        async with ingest.pool.acquire() as conn:
            results.append(
                await trigger.trigger(
                    conn,
                    ctx,
                    created.id,
                    TriggerRequest(event=event, provider=provider),
                    now=datetime.now(UTC),
                    send_to=base,
                )
            )
    assert [r.ingest_status for r in results] == [200, 200], results
    assert results[0].delivery_id != results[1].delivery_id

    records = await raw_tap.read(str(created.id).encode(), 2)
    assert len(records) == 2
    sources = [
        Source(topics.WEBHOOKS_RAW.name, r.partition, r.offset, r.key, r.value) for r in records
    ]
    normalizer = Normalizer(
        ingest.pool,
        FixtureClients(FixtureClient(provider, fixture.get("api_objects", {}))),  # type: ignore[arg-type]
    )
    processed = []
    for source in sources:
        await run_pipeline(ingest.pool, normalizer, [source])
        processed.append(
            await ingest.pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE connection_id = $1", created.id
            )
        )
    # The second delivery's events are new to the dedup table, none dropped as seen.
    assert processed[0] >= 1
    assert processed[1] == 2 * processed[0]

    async with ingest.pool.acquire() as conn:
        applied = await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE tenant_id = $1",  # noqa: S608 - fixed names
            created.tenant_id,
        )
        dead = await conn.fetch(
            "SELECT reason, detail FROM dead_letters WHERE tenant_id = $1", created.tenant_id
        )
        audit = await conn.fetch(
            "SELECT action, change FROM admin_audit_log WHERE tenant_id = $1 AND target_id = $2",
            created.tenant_id,
            created.id,
        )
    assert applied >= 1
    assert [dict(d) for d in dead] == []
    assert [a["action"] for a in audit].count("connection.trigger") == 2
    assert audit[-1]["change"] == {"event": event, "provider": provider}


async def test_a_bad_trigger_is_refused_and_sends_nothing(ingest: Ingest, raw_tap: Tap) -> None:
    created = await _connect(ingest.pool, ingest, "stripe", {})
    ctx = _context(ingest, created.tenant_id)
    base = str(ingest.client.make_url("")).rstrip("/")
    cases = [
        (created.id, TriggerRequest(event="customer.exploded"), InvalidError),
        (created.id, TriggerRequest(event="contact.update", provider="xero"), InvalidError),
        (uuid.uuid4(), TriggerRequest(event="customer.created"), NotFoundError),
    ]
    for connection_id, body, error in cases:
        async with ingest.pool.acquire() as conn:
            with pytest.raises(error):
                await trigger.trigger(
                    conn, ctx, connection_id, body, now=datetime.now(UTC), send_to=base
                )
    assert await raw_tap.nothing_for(str(created.id).encode())
    # Another tenant's connection is as unknown as none.
    other = await _connect(ingest.pool, ingest, "stripe", {})
    async with ingest.pool.acquire() as conn:
        with pytest.raises(NotFoundError):
            await trigger.trigger(
                conn, ctx, other.id, TriggerRequest(event="customer.created"), now=datetime.now(UTC)
            )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM admin_audit_log WHERE action = 'connection.trigger'"
            )
            == 0
        )


def test_every_sample_named_here_is_shipped() -> None:
    for provider, (event, _) in ONE_PER_PROVIDER.items():
        assert event in samples.events(provider)
