"""Operational notifications (issue 20) on the real PostgreSQL, with a real HTTP receiver:
registered through the admin API, announced once per episode, signed as Standard Webhooks,
retried on failure, given up after the schedule, and one evaluation however many workers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from connectors.base import WebhookRequest
from connectors.egress import provider_session
from connectors.standard_webhooks.signature import StandardWebhooksScheme
from crmsync.application.notifier import RETRY_SCHEDULE, Thresholds, deliver_due, evaluate
from tests.integration.test_admin_api import Admin, admin, new_connection, running_admin

__all__ = ["admin"]  # the fixture, imported for pytest

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
THRESHOLDS = Thresholds(circuit_minutes=10, dead_letters=3)


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    # Statuses to answer, in order; 204 once they run out.
    answers: list[int] = field(default_factory=list)

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver("")

    async def hook(request: web.Request) -> web.Response:
        box.received.append((dict(request.headers), await request.read()))
        return web.Response(status=box.answers.pop(0) if box.answers else 204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    box.url = f"http://127.0.0.1:{port}/hook"
    yield box
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = provider_session(allow_private=True)
    yield s
    await s.close()


async def _endpoint(admin: Admin, url: str, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await admin.ok(
        "POST", "/v1/notification-endpoints", 201, json={"url": url, **body}
    )
    return created


async def _pass(admin: Admin, session: aiohttp.ClientSession, now: datetime) -> tuple[int, int]:
    async with admin.pool.acquire() as conn:
        queued = await evaluate(conn, now=now, thresholds=THRESHOLDS)
    sent = await deliver_due(admin.pool, session, admin.keyring, now=now)
    return queued, sent


async def _dead_letter(admin: Admin, connection_id: uuid.UUID) -> None:
    """One open outbound dead letter of ``connection_id`` (a push Stripe refused)."""
    await admin.pool.execute(
        """
        INSERT INTO dead_letters (stage, reason, tenant_id, connection_id, topic, payload)
        VALUES ('outbound', 'provider_rule', $1, $2, 'records.changed', 'x')
        """,
        admin.tenant,
        connection_id,
    )


async def _set_status(pool: asyncpg.Pool, connection_id: str, status: str) -> None:
    await pool.execute(
        "UPDATE connections SET status = $2 WHERE id = $1", uuid.UUID(connection_id), status
    )


async def test_an_episode_is_announced_once_signed_and_again_after_it_clears(
    admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await _endpoint(admin, receiver.url, description="ops")
    assert endpoint["secret"].startswith("whsec_")
    shown = await admin.ok("GET", f"/v1/notification-endpoints/{endpoint['id']}")
    assert "secret" not in shown
    xero = (await new_connection(admin, "xero"))["id"]

    assert await _pass(admin, session, T0) == (0, 0)  # nothing wrong yet
    await _set_status(admin.pool, xero, "needs_reauth")
    assert await _pass(admin, session, T0) == (1, 1)
    assert await _pass(admin, session, T0 + timedelta(minutes=1)) == (0, 0)  # still the same
    ((headers, body),) = receiver.received
    verified = StandardWebhooksScheme().verify(
        WebhookRequest("POST", receiver.url, {k.lower(): v for k, v in headers.items()}, body),
        [endpoint["secret"]],
        T0.timestamp(),
    )
    message = json.loads(body)
    assert message["type"] == "connection.needs_reauth"
    assert message["data"]["connection_id"] == xero
    assert message["data"]["provider"] == "xero"
    delivery = (await admin.ok("GET", f"/v1/notification-endpoints/{endpoint['id']}/deliveries"))[
        "items"
    ][0]
    assert verified.provider_event_id == f"msg_{delivery['id']}"
    assert delivery["status"] == "delivered"

    await _set_status(admin.pool, xero, "active")
    assert await _pass(admin, session, T0 + timedelta(minutes=2)) == (0, 0)
    await _set_status(admin.pool, xero, "needs_reauth")
    assert await _pass(admin, session, T0 + timedelta(minutes=3)) == (1, 1)
    assert receiver.types() == ["connection.needs_reauth"] * 2


async def test_a_failed_delivery_is_retried_then_given_up(
    admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    endpoint = await _endpoint(admin, receiver.url)
    receiver.answers = [500] * (len(RETRY_SCHEDULE) + 1)
    await admin.ok("POST", f"/v1/notification-endpoints/{endpoint['id']}/test", 202)
    now = datetime.now(UTC)
    assert await deliver_due(admin.pool, session, admin.keyring, now=now) == 1
    path = f"/v1/notification-endpoints/{endpoint['id']}/deliveries"
    (first,) = (await admin.ok("GET", path))["items"]
    assert first["status"] == "pending"
    assert (first["attempts"], first["last_status"], first["last_error"]) == (1, 500, "HTTP 500")
    # Not due before its backoff.
    assert await deliver_due(admin.pool, session, admin.keyring, now=now) == 0
    for wait in RETRY_SCHEDULE:
        now += timedelta(seconds=wait + 1)
        assert await deliver_due(admin.pool, session, admin.keyring, now=now) == 1
    (last,) = (await admin.ok("GET", path, params={"status": "failed"}))["items"]
    assert last["attempts"] == len(RETRY_SCHEDULE) + 1
    assert len(receiver.received) == len(RETRY_SCHEDULE) + 1
    assert await deliver_due(admin.pool, session, admin.keyring, now=now + timedelta(days=2)) == 0
    # One that answers 2xx on the second try is delivered.
    receiver.answers = [503]
    await admin.ok("POST", f"/v1/notification-endpoints/{endpoint['id']}/test", 202)
    now = datetime.now(UTC)
    await deliver_due(admin.pool, session, admin.keyring, now=now)
    await deliver_due(admin.pool, session, admin.keyring, now=now + timedelta(seconds=6))
    (done,) = (await admin.ok("GET", path, params={"status": "delivered"}))["items"]
    assert done["attempts"] == 2


async def test_a_send_that_never_finished_is_sent_again_after_its_lease(
    admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """A worker that dies between claiming and recording leaves the delivery to another."""
    endpoint = await _endpoint(admin, receiver.url)
    await admin.ok("POST", f"/v1/notification-endpoints/{endpoint['id']}/test", 202)
    now = datetime.now(UTC)
    claimed = await admin.pool.execute(
        "UPDATE notification_deliveries SET next_attempt_at = $1 WHERE status = 'pending'",
        now + timedelta(seconds=60),
    )
    assert claimed == "UPDATE 1"
    assert await deliver_due(admin.pool, session, admin.keyring, now=now) == 0
    assert (
        await deliver_due(admin.pool, session, admin.keyring, now=now + timedelta(seconds=61)) == 1
    )
    assert receiver.types() == ["test"]


async def test_dead_letters_circuit_and_failed_jobs_with_their_thresholds(
    admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await _endpoint(admin, receiver.url)
    only_jobs = await _endpoint(admin, receiver.url + "?jobs", event_types=["sync_job.failed"])
    stripe = uuid.UUID((await new_connection(admin, "stripe"))["id"])
    for _ in range(THRESHOLDS.dead_letters - 1):
        await _dead_letter(admin, stripe)
    assert await _pass(admin, session, T0) == (0, 0)
    await _dead_letter(admin, stripe)
    assert await _pass(admin, session, T0) == (1, 1)
    assert json.loads(receiver.received[-1][1])["data"]["open_dead_letters"] == 3

    # The circuit: announced only once it has stayed open for circuit_minutes.
    await admin.pool.execute(
        """
        INSERT INTO push_jobs (tenant_id, connection_id, entity_type, entity_id, version,
                               next_attempt_at, last_error)
        VALUES ($1, $2, 'customer', gen_random_uuid(), 1, $3, 'circuit_open: stripe')
        """,
        admin.tenant,
        stripe,
        T0 + timedelta(hours=1),
    )
    assert await _pass(admin, session, T0 + timedelta(minutes=1)) == (0, 0)
    assert await _pass(admin, session, T0 + timedelta(minutes=12)) == (1, 1)
    assert receiver.types()[-1] == "connection.circuit_open"

    job = await admin.pool.fetchval(
        """
        INSERT INTO sync_jobs (tenant_id, connection_id, kind, entity_types, status, error,
                               finished_at)
        VALUES ($1, $2, 'backfill', '{customer}', 'failed', 'mapping_error', $3) RETURNING id
        """,
        admin.tenant,
        stripe,
        T0 + timedelta(minutes=13),
    )
    assert await _pass(admin, session, T0 + timedelta(minutes=14)) == (2, 2)  # both endpoints
    jobs = [json.loads(b) for h, b in receiver.received if b and "sync_job" in b.decode()]
    assert [m["data"]["job_id"] for m in jobs] == [str(job)] * 2
    # The jobs-only endpoint got nothing else.
    path = f"/v1/notification-endpoints/{only_jobs['id']}/deliveries"
    assert [d["event_type"] for d in (await admin.ok("GET", path))["items"]] == ["sync_job.failed"]


async def test_concurrent_evaluations_queue_once(admin: Admin, receiver: Receiver) -> None:
    await _endpoint(admin, receiver.url)
    xero = (await new_connection(admin, "xero"))["id"]
    await _set_status(admin.pool, xero, "needs_reauth")

    async def one() -> int:
        async with admin.pool.acquire() as conn:
            return await evaluate(conn, now=T0, thresholds=THRESHOLDS)

    results = await asyncio.gather(*(one() for _ in range(4)))
    assert sum(results) == 1
    count = await admin.pool.fetchval("SELECT count(*) FROM notification_deliveries")
    assert count == 1


async def test_endpoints_refuse_private_urls_unless_allowed_and_belong_to_their_tenant(
    database_url: str,
) -> None:
    async with running_admin(database_url, allow_private_provider_urls=False) as strict:
        for url in ("http://169.254.169.254/latest", "http://127.0.0.1:9/hook"):
            status, body = await strict.call(
                "POST", "/v1/notification-endpoints", json={"url": url}
            )
            assert status == 422, body
            assert body["errors"][0]["loc"] == "/body/url"
        created = await _endpoint(strict, "https://hooks.example.com/crmsync")
        status, _ = await strict.call(
            "GET", f"/v1/notification-endpoints/{created['id']}", key=strict.other_key
        )
        assert status == 404
        status, _ = await strict.call(
            "POST",
            "/v1/notification-endpoints",
            key=strict.read_key,
            json={"url": "https://x.io/h"},
        )
        assert status == 403
        trail = (await strict.ok("GET", "/v1/audit-log"))["items"]
        assert [e["action"] for e in trail] == ["notification_endpoint.create"]
        assert created["secret"] not in json.dumps(trail)
        await strict.ok("DELETE", f"/v1/notification-endpoints/{created['id']}", 204)
        listed = await strict.ok("GET", "/v1/notification-endpoints")
        assert listed["items"] == []
