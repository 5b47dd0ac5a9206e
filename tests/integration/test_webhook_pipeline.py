"""Provider webhooks through the processor on the real Postgres: every built-in provider's
documented sample payloads (tests/fixtures/<provider>/) become the right canonical rows;
redeliveries change nothing; thin webhooks are hydrated, and a provider that keeps
failing parks the envelope as a redrivable ``hydrate`` dead letter.

Hydration here goes through a client port that answers from the fixture's
``api_objects``: each real client is proven against its simulator in
tests/integration/connectors/, and end to end in tests/e2e/.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connectors.http import NotFoundError, ProviderError, StaticAuth
from connectors.limits import AsyncTokenBucket, CircuitBreaker
from connectors.registry import connector
from connectors.runtime import ConnectionInfo, Handle
from connectors.spec import EntityType, Page, RateLimit, RemoteRecord
from crmsync.common.crypto import KeyRing
from schemas import topics
from schemas.envelope import WebhookEnvelope
from services.processor.deadletters import Source
from services.processor.normalize import HydrationPolicy, Normalizer
from services.processor.pipeline import Processor
from tests.integration.connections import lone_connection

FIXTURES = Path(__file__).parents[1] / "fixtures"
MAPPED = sorted(
    path
    for path in FIXTURES.glob("*/*.json")
    if path.parent.name != "generic" and connector(path.parent.name).mapper is not None
)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def settings_for(provider: str, body: Any) -> dict[str, Any]:
    """What a real connection of this provider stores, read off the sample's own ids."""
    if provider == "ascora":
        return {"company_code": "DEMO"}
    if provider == "xero" and body.get("events"):
        return {"xero_tenant_id": body["events"][0]["tenantId"]}
    if provider == "quickbooks":
        if isinstance(body, dict) and body.get("eventNotifications"):
            return {"realm_id": body["eventNotifications"][0]["realmId"]}
        if isinstance(body, list) and body:
            return {"realm_id": body[0].get("intuitaccountid")}
    return {}


class FixtureClient:
    def __init__(self, provider: str, objects: Mapping[str, Mapping[str, Any]], fail: int = 0):
        self.mapper = connector(provider).mapper
        self.objects = objects
        self.fail = fail
        self.fetches = 0

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        self.fetches += 1
        if self.fail:
            raise ProviderError("upstream down", status=503, body_excerpt="busy", request="GET /x")
        obj = self.objects.get(entity_type, {}).get(external_id)
        if obj is None:
            raise NotFoundError("gone", status=404)
        assert self.mapper is not None
        return self.mapper.to_canonical(entity_type, obj, {})

    async def create(self, *args: Any) -> RemoteRecord:
        raise AssertionError("hydration never writes")

    update = delete = create

    async def list_page(self, *args: Any) -> Page:
        raise AssertionError("hydration never lists")


class FixtureClients:
    def __init__(self, client: FixtureClient) -> None:
        self.client = client

    async def get(self, info: ConnectionInfo) -> Handle:
        return Handle(
            info,
            info.connector(),
            self.client,  # type: ignore[arg-type]
            StaticAuth.bearer("unused"),
            AsyncTokenBucket(RateLimit(1000, 1, 1000)),
            CircuitBreaker(),
            asyncio.Semaphore(5),
        )


async def connect(
    pool: asyncpg.Pool, provider: str, settings: dict[str, Any]
) -> tuple[uuid.UUID, uuid.UUID]:
    """A connection of a tenant of its own: its id and its tenant's."""
    created = await lone_connection(
        pool,
        KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"]),
        provider=provider,
        name=provider,
        webhook_secret=connector(provider).scheme.generate_secret(),
        settings=settings,
    )
    return created.id, created.tenant_id


async def ascora_customer_updated(
    pool: asyncpg.Pool, settings: dict[str, Any] | None = None
) -> tuple[bytes, uuid.UUID, uuid.UUID]:
    """Ascora's customer_updated webhook body (the fixture's), and a connection to Ascora
    (``settings``, else company DEMO's) of a tenant of its own: its id and its tenant's."""
    body = json.dumps(load(FIXTURES / "ascora" / "customer_updated.json")["body"]).encode()
    connection, tenant = await connect(pool, "ascora", settings or {"company_code": "DEMO"})
    return body, connection, tenant


def envelope(
    connection: uuid.UUID,
    tenant: uuid.UUID,
    provider: str,
    body: bytes,
    n: int,
    *,
    headers: dict[str, str] | None = None,
) -> Source:
    """One delivery as ingest would publish it; ``headers`` are the ones the fixture's
    provider sends beside the body (Shopify's topic), kept as ingest keeps them."""
    env = WebhookEnvelope(
        tenant_id=tenant,
        connection_id=connection,
        provider=provider,
        provider_event_id=f"delivery-{n}",
        received_at=datetime.now(UTC),
        content_type="application/json",
        headers={"content-type": "application/json", "webhook-id": f"msg_{n}", **(headers or {})},
        body=body,
    )
    return Source(topics.WEBHOOKS_RAW.name, 0, n, None, env.model_dump_json().encode())


async def run_pipeline(
    pool: asyncpg.Pool, normalizer: Normalizer, sources: list[Source]
) -> list[Any]:
    outputs = await normalizer.handle(sources)
    normalized = [
        Source(topics.CHANGES_NORMALIZED.name, 0, i, o.key, o.value) for i, o in enumerate(outputs)
    ]
    if not normalized:
        return []
    return await Processor(pool).handle(topics.CHANGES_NORMALIZED.name, normalized)


@pytest.mark.parametrize("path", MAPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_sample_webhook_becomes_the_expected_canonical_rows(
    pool: asyncpg.Pool, path: Path
) -> None:
    provider = path.parent.name
    fixture = load(path)
    body = json.dumps(fixture["body"]).encode()
    connection, tenant = await connect(pool, provider, settings_for(provider, fixture["body"]))
    client = FixtureClient(provider, fixture["api_objects"])
    normalizer = Normalizer(pool, FixtureClients(client))  # type: ignore[arg-type]

    source = envelope(connection, tenant, provider, body, 1, headers=fixture.get("headers"))
    await run_pipeline(pool, normalizer, [source])

    final: dict[tuple[str, str], dict[str, Any]] = {}
    for expected in fixture["expected"]:
        final[(expected["entity_type"], expected["external_id"])] = expected
    # A record naming one the connection has not sent (an invoice's customer in a webhook
    # of its own) waits for it, unapplied (invariant 10), unless the webhook holds it too.
    waiting = {
        (r["entity_type"], r["external_id"]): (r["ref_type"], r["ref_external_id"])
        for r in await pool.fetch(
            "SELECT * FROM waiting_changes WHERE connection_id = $1", connection
        )
    }
    for (entity_type, external_id), expected in final.items():
        if (entity_type, external_id) in waiting:
            named = waiting[(entity_type, external_id)]
            assert named not in final or named in waiting, f"{entity_type} waits for {named}"
            continue
        table = {"customer": "customers", "job": "jobs", "invoice": "invoices"}.get(
            entity_type, "payments"
        )
        row = await pool.fetchrow(
            f"""
            SELECT r.data, r.deleted_at FROM entity_links l JOIN {table} r ON r.id = l.entity_id
             WHERE l.connection_id = $1 AND l.entity_type = $2 AND l.external_id = $3
            """,  # noqa: S608 - fixed table names
            connection,
            entity_type,
            external_id,
        )
        if expected["op"] == "delete":
            # A delete of a record never seen before has nothing to delete.
            assert row is None or row["deleted_at"] is not None
            continue
        assert row is not None, f"{entity_type} {external_id} was not applied"
        for field, value in expected["data"].items():
            assert row["data"].get(field) == value, f"{entity_type}.{field}"
    dead = await pool.fetch("SELECT reason, detail FROM dead_letters")
    assert [dict(d) for d in dead] == []


async def test_the_same_webhook_three_times_is_one_change(pool: asyncpg.Pool) -> None:
    body, connection, tenant = await ascora_customer_updated(pool)
    normalizer = Normalizer(pool, None)
    for _ in range(3):
        # Same webhook-id (the provider's delivery id), redelivered.
        source = envelope(connection, tenant, "ascora", body, 7)
        await run_pipeline(pool, normalizer, [source])
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1


async def test_a_hydrated_quickbooks_state_is_ordered_by_its_sync_token(
    pool: asyncpg.Pool,
) -> None:
    """The hydration's SyncToken travels with the normalised change to the link; a later
    notification hydrated at a lower SyncToken (a read from a replica behind, stamped in
    the same second) is an older state: stale, whatever its values (issue 17)."""
    fixture = load(FIXTURES / "quickbooks" / "classic_customer_vendor_create.json")
    body = fixture["body"]
    connection, tenant = await connect(pool, "quickbooks", settings_for("quickbooks", body))
    objects = json.loads(json.dumps(fixture["api_objects"]))
    customer = objects["customer"]["1"]["Customer"]
    customer["SyncToken"] = "10"
    normalizer = Normalizer(pool, FixtureClients(FixtureClient("quickbooks", objects)))  # type: ignore[arg-type]
    await run_pipeline(
        pool, normalizer, [envelope(connection, tenant, "quickbooks", json.dumps(body).encode(), 1)]
    )
    link = "SELECT remote_version FROM entity_links WHERE connection_id = $1"
    assert await pool.fetchval(link, connection) == "10"
    phone = customer["PrimaryPhone"]["FreeFormNumber"]

    customer["SyncToken"] = "9"  # a counter: "9" is below "10", though not as text
    customer["PrimaryPhone"] = {"FreeFormNumber": "(650) 555-0000"}
    body["eventNotifications"][0]["dataChangeEvent"]["entities"][0]["operation"] = "Update"
    [applied] = await run_pipeline(
        pool, normalizer, [envelope(connection, tenant, "quickbooks", json.dumps(body).encode(), 2)]
    )
    assert applied.outcome == "stale"
    assert (
        await pool.fetchval(
            "SELECT c.data->>'phone' FROM customers c JOIN entity_links l"
            " ON l.entity_id = c.id WHERE l.connection_id = $1",
            connection,
        )
        == phone
    )
    assert await pool.fetchval(link, connection) == "10"


@pytest.mark.parametrize(
    "settings",
    [
        {"company_code": "DEMO", "direction": "out"},
        {"company_code": "DEMO", "entity_types": ["invoice", "payment"]},
    ],
    ids=["direction-out", "other-entity-types"],
)
async def test_a_connection_that_does_not_sync_the_type_inbound_changes_nothing(
    pool: asyncpg.Pool, settings: dict[str, Any]
) -> None:
    body, connection, tenant = await ascora_customer_updated(pool, settings)
    await run_pipeline(
        pool, Normalizer(pool, None), [envelope(connection, tenant, "ascora", body, 1)]
    )
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0


async def test_a_garbage_body_is_a_dead_letter_and_the_next_webhook_still_applies(
    pool: asyncpg.Pool,
) -> None:
    body, connection, tenant = await ascora_customer_updated(pool)
    sources = [
        envelope(connection, tenant, "ascora", b"{not json", 1),
        Source(topics.WEBHOOKS_RAW.name, 0, 2, None, b"not an envelope"),
        envelope(connection, tenant, "ascora", body, 3),
    ]
    await run_pipeline(pool, Normalizer(pool, None), sources)
    dead = await pool.fetch("SELECT reason, kafka_offset, payload FROM dead_letters ORDER BY 2")
    assert [(d["reason"], d["kafka_offset"]) for d in dead] == [
        ("unparseable", 1),
        ("unparseable", 2),
    ]
    assert dead[1]["payload"] == b"not an envelope"
    assert await pool.fetchval("SELECT count(*) FROM customers") == 1


async def test_a_webhook_of_a_deleted_connection_is_parked_where_its_tenant_sees_it(
    pool: asyncpg.Pool,
) -> None:
    body, connection, tenant = await ascora_customer_updated(pool)
    await pool.execute("DELETE FROM connections WHERE id = $1", connection)
    await run_pipeline(
        pool, Normalizer(pool, None), [envelope(connection, tenant, "ascora", body, 1)]
    )
    dead = await pool.fetchrow("SELECT reason, tenant_id, connection_id FROM dead_letters")
    assert (dead["reason"], dead["tenant_id"], dead["connection_id"]) == (
        "unknown_connection",
        tenant,
        None,
    )


async def test_a_provider_that_keeps_failing_parks_the_thin_webhook_for_redrive(
    pool: asyncpg.Pool,
) -> None:
    fixture = load(FIXTURES / "hubspot" / "contact_property_change_and_creation.json")
    body = json.dumps(fixture["body"]).encode()
    connection, tenant = await connect(pool, "hubspot", {})
    client = FixtureClient("hubspot", fixture["api_objects"], fail=1)
    normalizer = Normalizer(
        pool,
        FixtureClients(client),  # type: ignore[arg-type]
        policy=HydrationPolicy(attempts=3, base_seconds=0.01, cap_seconds=0.02),
    )
    source = envelope(connection, tenant, "hubspot", body, 1)
    await run_pipeline(pool, normalizer, [source])
    items = len(fixture["expected"])
    assert client.fetches == 3 * items
    dead = await pool.fetchrow("SELECT * FROM dead_letters")
    assert dead["stage"] == "hydrate"
    assert dead["reason"] == "provider_5xx"
    assert "busy" in dead["detail"]
    assert dead["payload"] == source.value, "the envelope is kept byte for byte for a redrive"
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0

    # The provider recovers; the redriven envelope goes through.
    client.fail = 0
    await run_pipeline(pool, normalizer, [source])
    assert await pool.fetchval("SELECT count(*) FROM customers") == len(
        {e["external_id"] for e in fixture["expected"]}
    )
