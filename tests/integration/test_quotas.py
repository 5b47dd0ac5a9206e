"""Quotas per tenant (issue 20) on the real Kafka and PostgreSQL: the internal API's 429
with Retry-After past the rate, webhooks accepted past it and the tenant notified once,
the connection and records limits, /v1/quotas and its audit trail, bad input refused
with nothing changed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from connectors.egress import provider_session
from crmsync.application import notifications
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.models import NotificationEndpointCreate
from crmsync.application.notifier import Thresholds, deliver_due, evaluate
from crmsync.common import quotas
from crmsync.common.connections import CreatedConnection
from crmsync.common.quotas import window_start
from services.ingest.app import QUOTAS
from services.ingest.quotas import QuotaKeeper
from tests.ingest_harness import Ingest, Tap
from tests.integration.test_admin_api import Admin, admin, new_connection
from tests.integration.test_notifications import Receiver, receiver
from tests.signing import sign

__all__ = ["admin", "receiver"]  # fixtures, imported for pytest

STRIPE_SECRET = "whsec_" + "q" * 32
# Ten seconds into a minute: every request of a test falls in the same window.
NOW = time.time() // 60 * 60 + 10


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = provider_session(allow_private=True)
    yield s
    await s.close()


def _keeper(ingest: Ingest) -> QuotaKeeper:
    keeper = ingest.client.app[QUOTAS]  # type: ignore[union-attr]
    keeper.clock = lambda: NOW
    return keeper


async def _limit(ingest: Ingest, tenant_id: uuid.UUID, **limits: int | None) -> None:
    async with ingest.pool.acquire() as conn:
        await quotas.set_limits(conn, tenant_id, limits, actor="test")  # type: ignore[arg-type]
    assert await _keeper(ingest).sync()


def _context(ingest: Ingest, tenant_id: uuid.UUID) -> Context:
    return Context(
        tenant_id=tenant_id,
        keyring=ingest.keyring,
        public_base_url="https://hooks.example.com",
        kafka=KafkaTarget(ingest.settings.kafka_bootstrap_servers),
        actor="test",
        allow_private_provider_urls=True,
    )


def _change(external_id: str = "cust-1") -> dict[str, Any]:
    return {
        "event_id": f"chg-{uuid.uuid4().hex[:8]}",
        "entity_type": "customer",
        "op": "upsert",
        "external_id": external_id,
        "occurred_at": "2026-11-21T10:00:00Z",
        "data": {"name": "Acme Plumbing"},
    }


async def _internal(ingest: Ingest, tenant: str) -> tuple[CreatedConnection, dict[str, str]]:
    conn = await ingest.connect("internal", None, tenant=tenant)
    return conn, {"Authorization": f"Bearer {conn.api_key}"}


async def _webhook(ingest: Ingest, conn: CreatedConnection) -> int:
    body = json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "type": "customer.updated", "data": {"object": {}}}
    ).encode()
    headers = sign("stripe", STRIPE_SECRET, body, now=time.time())
    resp = await ingest.client.post(f"/webhooks/stripe/{conn.id}", data=body, headers=headers)
    return resp.status


async def test_internal_changes_past_the_rate_get_429_with_retry_after_and_are_not_stored(
    ingest: Ingest, changes_tap: Tap
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    conn, auth = await _internal(ingest, tenant)
    await _limit(ingest, conn.tenant_id, events_per_minute=3)

    batch = [_change(f"cust-{i}") for i in range(3)]
    ok = await ingest.client.post("/v1/changes", json=batch, headers=auth)
    assert ok.status == 202, await ok.text()
    refused = await ingest.client.post("/v1/changes", json=_change("cust-late"), headers=auth)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "50"  # the seconds left in the minute
    assert refused.content_type == "application/problem+json"
    problem = await refused.json()
    assert problem["status"] == 429
    assert (problem["quota"], problem["limit"], problem["retry_after"]) == (
        "events_per_minute",
        3,
        50,
    )
    assert await changes_tap.nothing_for(f"{conn.tenant_id}:customer:cust-late".encode())

    # Counted for the API: 3 events this minute, 1 refused.
    assert await _keeper(ingest).sync()
    async with ingest.pool.acquire() as db:
        usage = await quotas.usage_in(db, conn.tenant_id, datetime.fromtimestamp(NOW - 10, UTC))
    assert usage == quotas.WindowUsage(events=3, accepted_over=0, refused=1)


async def test_webhooks_past_the_rate_are_accepted_counted_and_notified_once(
    ingest: Ingest, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    stripe = await ingest.connect("stripe", STRIPE_SECRET, tenant=tenant)
    _, auth = await _internal(ingest, tenant)
    await _limit(ingest, stripe.tenant_id, events_per_minute=2)
    async with ingest.pool.acquire() as conn:
        await notifications.create(
            conn, _context(ingest, stripe.tenant_id), NotificationEndpointCreate(url=receiver.url)
        )

    assert [await _webhook(ingest, stripe) for _ in range(5)] == [200] * 5
    # The webhooks took the tenant's rate: its internal API is refused for the minute.
    late = await ingest.client.post("/v1/changes", json=_change(), headers=auth)
    assert late.status == 429

    assert await _keeper(ingest).sync()
    now = datetime.fromtimestamp(NOW, UTC)
    async with ingest.pool.acquire() as conn:
        usage = await quotas.usage_in(conn, stripe.tenant_id, datetime.fromtimestamp(NOW - 10, UTC))
        assert usage == quotas.WindowUsage(events=5, accepted_over=3, refused=1)
        assert await evaluate(conn, now=now, thresholds=Thresholds()) == 1
    await deliver_due(ingest.pool, session, ingest.keyring, now=now)
    assert receiver.types() == ["quota.reached"]
    data = json.loads(receiver.received[0][1])["data"]
    assert (data["quota"], data["limit"], data["accepted_over_limit"]) == (
        "events_per_minute",
        2,
        3,
    )

    # More over the limit in the same episode: accepted, and no second message.
    assert await _webhook(ingest, stripe) == 200
    assert await _keeper(ingest).sync()
    async with ingest.pool.acquire() as conn:
        assert await evaluate(conn, now=now, thresholds=Thresholds()) == 0


async def test_a_tenant_at_its_records_limit_takes_updates_but_not_new_internal_records(
    ingest: Ingest, changes_tap: Tap
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    conn, auth = await _internal(ingest, tenant)
    async with ingest.pool.acquire() as db:
        record = await db.fetchval(
            "INSERT INTO customers (tenant_id, data) VALUES ($1, '{}') RETURNING id",
            conn.tenant_id,
        )
        await db.execute(
            """
            INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,
                                      external_id)
            VALUES ($1, $2, 'customer', $3, 'cust-known')
            """,
            conn.tenant_id,
            conn.id,
            record,
        )
    await _limit(ingest, conn.tenant_id, records=1)
    # Per quota in the metrics, never per tenant (this test's database has this one).
    at_limit = REGISTRY.get_sample_value("crmsync_quota_tenants_at_limit", {"quota": "records"})
    ratio = REGISTRY.get_sample_value("crmsync_quota_highest_usage_ratio", {"quota": "records"})
    assert (at_limit, ratio) == (1, 1.0)

    update = await ingest.client.post("/v1/changes", json=_change("cust-known"), headers=auth)
    assert update.status == 202, await update.text()
    mixed = [_change("cust-known"), _change("cust-new")]
    refused = await ingest.client.post("/v1/changes", json=mixed, headers=auth)
    assert refused.status == 409
    problem = await refused.json()
    assert (problem["quota"], problem["limit"], problem["usage"]) == ("records", 1, 1)
    assert [e["loc"] for e in problem["errors"]] == ["/1"]
    assert await changes_tap.nothing_for(f"{conn.tenant_id}:customer:cust-new".encode())
    # Deletes never create: taken.
    delete = {**_change("cust-other"), "op": "delete", "data": {}}
    assert (await ingest.client.post("/v1/changes", json=delete, headers=auth)).status == 202


async def test_records_at_their_limit_are_notified_once(
    ingest: Ingest, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Provider records are applied past the limit (nothing refuses them): the tenant is told."""
    stripe = await ingest.connect("stripe", STRIPE_SECRET, tenant=f"t-{uuid.uuid4().hex[:10]}")
    async with ingest.pool.acquire() as conn:
        await notifications.create(
            conn, _context(ingest, stripe.tenant_id), NotificationEndpointCreate(url=receiver.url)
        )
        await quotas.set_limits(conn, stripe.tenant_id, {"records": 2}, actor="test")
        now = datetime.fromtimestamp(NOW, UTC)
        for _ in range(2):
            assert await evaluate(conn, now=now, thresholds=Thresholds()) == 0
            await conn.execute(
                "INSERT INTO customers (tenant_id, data) VALUES ($1, '{}')", stripe.tenant_id
            )
        assert await evaluate(conn, now=now, thresholds=Thresholds()) == 1
        assert await evaluate(conn, now=now, thresholds=Thresholds()) == 0
    await deliver_due(ingest.pool, session, ingest.keyring, now=now)
    (message,) = [json.loads(body) for _, body in receiver.received]
    assert message["type"] == "quota.reached"
    assert message["data"]["quota"] == "records"
    assert (message["data"]["limit"], message["data"]["usage"]) == (2, 2)


async def test_connection_limit_is_409_and_quotas_show_limits_and_usage(admin: Admin) -> None:
    limits = {"max_connections": 2, "events_per_minute": 600, "max_records": None}
    shown = await admin.ok("PUT", "/v1/quotas", json=limits)
    assert shown["connections"] == {"limit": 2, "usage": 0}
    assert shown["records"] == {"limit": None, "usage": 0}
    assert shown["events_per_minute"]["limit"] == 600
    await new_connection(admin, "stripe", name="one")
    await new_connection(admin, "xero", name="two")

    status, problem = await admin.call(
        "POST", "/v1/connections", json={"provider": "hubspot", "name": "three"}
    )
    assert status == 409, problem
    assert (problem["quota"], problem["limit"], problem["usage"]) == ("connections", 2, 2)
    listed = await admin.ok("GET", "/v1/connections")
    assert sorted(c["name"] for c in listed["items"]) == ["one", "two"]
    # Another tenant's connections are not counted against this one's, nor its limits.
    status, _ = await admin.call(
        "POST", "/v1/connections", json={"provider": "hubspot"}, key=admin.other_key
    )
    assert status == 201

    raised = await admin.ok("PATCH", "/v1/quotas", json={"max_connections": 3})
    assert raised["connections"] == {"limit": 3, "usage": 2}
    assert raised["events_per_minute"]["limit"] == 600  # PATCH leaves the others
    await new_connection(admin, "hubspot", name="three")

    read = await admin.ok("GET", "/v1/quotas", key=admin.read_key)
    assert read["connections"] == {"limit": 3, "usage": 3}
    other = await admin.ok("GET", "/v1/quotas", key=admin.other_key)
    assert other["connections"] == {"limit": None, "usage": 1}

    log = await admin.ok("GET", "/v1/audit-log", params={"action": "quota"})
    assert [e["action"] for e in log["items"]] == ["quota.update", "quota.replace"]
    assert log["items"][0]["change"] == {"max_connections": 3}
    assert log["items"][1]["change"] == limits


async def test_bad_quota_input_is_4xx_and_changes_nothing(admin: Admin) -> None:
    await admin.ok(
        "PUT",
        "/v1/quotas",
        json={"max_connections": 5, "events_per_minute": 60, "max_records": 100},
    )
    before = await admin.ok("GET", "/v1/quotas")
    cases: list[tuple[str, Any, str | None, int]] = [
        ("PUT", {"max_connections": 1}, None, 422),  # PUT names every limit
        ("PATCH", {}, None, 422),
        ("PATCH", {"max_records": -1}, None, 422),
        ("PATCH", {"events_per_minute": "lots"}, None, 422),
        ("PATCH", {"events_per_minute": 1.5}, None, 422),
        ("PATCH", {"max_connections": 10**9}, None, 422),
        ("PATCH", {"colour": 1}, None, 422),
        ("PATCH", {"max_connections": 1}, admin.read_key, 403),
        ("PATCH", {"max_connections": 1}, None, 401),
    ]
    for method, body, key, status in cases:
        kwargs: dict[str, Any] = {"json": body}
        if status == 401:
            kwargs["key"] = None
        elif key is not None:
            kwargs["key"] = key
        got, problem = await admin.call(method, "/v1/quotas", **kwargs)
        assert got == status, (method, body, problem)
        assert problem["status"] == status
    not_json = await admin.client.patch(
        "/v1/quotas", data=b"{nope", headers={"Authorization": f"Bearer {admin.key}"}
    )
    assert not_json.status == 400
    assert await admin.ok("GET", "/v1/quotas") == before
    log = await admin.ok("GET", "/v1/audit-log", params={"action": "quota"})
    assert [e["action"] for e in log["items"]] == ["quota.replace"]


async def test_usage_window_sums_every_ingest_process(ingest: Ingest) -> None:
    """Two processes' meters over one database: each sees the other's events after a sync."""
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    conn, auth = await _internal(ingest, tenant)
    await _limit(ingest, conn.tenant_id, events_per_minute=4)
    other = QuotaKeeper(ingest.pool, sync_seconds=60, clock=lambda: NOW)
    assert await other.sync()
    assert other.meter.admit(conn.tenant_id, 3, NOW, refusable=True).admitted
    assert await other.sync()
    assert await _keeper(ingest).sync()

    ok = await ingest.client.post("/v1/changes", json=_change(), headers=auth)
    assert ok.status == 202
    assert (await ingest.client.post("/v1/changes", json=_change(), headers=auth)).status == 429
    assert window_start(NOW) == NOW - 10
