"""Pauses and freeze windows (issue 20) on the real PostgreSQL: an inbound pause parks a
connection's changes unapplied and releases them in order when it ends; an outbound pause
holds its pushes without counting attempts or calling the provider, and resume makes them
due at once; a tenant-wide window pauses every connection; nothing is lost or refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from crmsync.application import pauses
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.models import (
    Direction,
    FreezeWindowCreate,
    PauseRequest,
    ResumeRequest,
)
from crmsync.common.connections import CreatedConnection
from crmsync.common.pushes import claim
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from services.processor.waiting import count_waiting
from tests.e2e.sync_harness import SimulatedCrm, start_simulator
from tests.integration.test_admin_api import Admin, admin, new_connection
from tests.integration.test_outbound_references import CUSTOMER, Env, env
from tests.integration.test_references import KEYRING, TOPIC, at, change, processor, stripe

__all__ = ["admin", "env", "processor", "stripe"]  # fixtures, imported for pytest


def ctx_for(tenant_id: uuid.UUID) -> Context:
    return Context(
        tenant_id=tenant_id,
        keyring=KEYRING,
        public_base_url="https://hooks.example.test",
        kafka=KafkaTarget("127.0.0.1:9092"),
        actor="test",
    )


async def paused(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, connection_id: uuid.UUID, direction: Direction
) -> tuple[Context, datetime]:
    """The connection paused in ``direction`` from now, as its tenant pauses it: the
    tenant's context and that moment, for what the test does next."""
    ctx = ctx_for(tenant_id)
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        await pauses.pause(conn, ctx, connection_id, PauseRequest(direction=direction), now=now)
    return ctx, now


def customer(conn: CreatedConnection, name: str, seconds: int) -> object:
    return change(conn, "customer", "cus_1", {"name": name}, ts=at(seconds))


async def names(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT payload FROM outbox WHERE entity_type = 'customer'")
    return [r["payload"]["state"]["name"] for r in rows]


async def test_an_inbound_pause_parks_changes_unapplied_and_resume_applies_them_in_order(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    ctx, now = await paused(pool, stripe.tenant_id, stripe.id, "in")
    results = await processor.handle(
        TOPIC, [customer(stripe, "Ada", 1), customer(stripe, "Ada Lovelace", 2)]
    )
    assert [r.outcome if r else None for r in results] == [Outcome.WAITING] * 2
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0
    assert await count_waiting(pool) == 2
    # While paused, a later change of the record waits behind them, and nothing is released
    # or expires, however long it waits.
    (later,) = await processor.handle(TOPIC, [customer(stripe, "Ada L.", 3)])
    assert later is not None
    assert later.outcome is Outcome.WAITING
    assert await processor.release(100) == 0
    assert await processor.expire(0, 100) == 0
    assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0

    async with pool.acquire() as conn:
        ended = await pauses.resume(conn, ctx, stripe.id, ResumeRequest(), now=now)
    assert len(ended.ended) == 1
    assert await processor.release(100) == 3
    assert await names(pool) == ["Ada", "Ada Lovelace", "Ada L."]
    assert await count_waiting(pool) == 0
    # Applied once: delivered again, the changes are duplicates.
    assert await pool.fetchval("SELECT version FROM customers") == 3


async def test_a_pause_of_one_direction_leaves_the_other_and_other_connections_alone(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    ctx, now = await paused(pool, stripe.tenant_id, stripe.id, "out")
    (result,) = await processor.handle(TOPIC, [customer(stripe, "Ada", 1)])
    assert result is not None
    assert result.outcome is Outcome.APPLIED
    # A "both" pause resumed for "in" keeps holding "out".
    async with pool.acquire() as conn:
        both = await pauses.pause(conn, ctx, stripe.id, PauseRequest(), now=now)
        await pauses.resume(conn, ctx, stripe.id, ResumeRequest(direction="in"), now=now)
        held = await pauses.in_force(conn, stripe.tenant_id, stripe.id, now)
    assert {(p.id == both.id, p.inbound, p.outbound) for p in held} == {
        (False, False, True),
        (True, False, True),
    }
    (again,) = await processor.handle(TOPIC, [customer(stripe, "Ada L.", 2)])
    assert again is not None
    assert again.outcome is Outcome.APPLIED


async def test_a_pause_with_an_end_releases_by_itself(
    pool: asyncpg.Pool, stripe: CreatedConnection, processor: Processor
) -> None:
    ctx = ctx_for(stripe.tenant_id)
    start = datetime.now(UTC) - timedelta(minutes=10)
    async with pool.acquire() as conn:
        window = await pauses.create_window(
            conn,
            ctx,
            FreezeWindowCreate(
                direction="in", starts_at=start, ends_at=start + timedelta(minutes=20)
            ),
            now=start,
        )
    (waiting,) = await processor.handle(TOPIC, [customer(stripe, "Ada", 1)])
    assert waiting is not None
    assert waiting.outcome is Outcome.WAITING
    await pool.execute(
        "UPDATE pauses SET ends_at = now() - interval '1 second' WHERE id = $1", window.id
    )
    assert await processor.release(100) == 1
    assert await names(pool) == ["Ada"]


async def test_an_outbound_pause_holds_pushes_without_attempts_and_resume_sends_them(
    env: Env,
) -> None:
    crm: SimulatedCrm = await start_simulator("xero")
    try:
        target = await env.connect(crm, "xero")
        ctx, now = await paused(env.pool, env.tenant_id, target, "out")
        customer_id = await env.record("customer", CUSTOMER)
        await env.push(target, "customer", customer_id)
        await env.run_due()
        await env.run_due()
        assert await env.queued() == [("customer", 0)]  # held, no attempt counted
        assert crm.sim.live("customer") == []  # the provider was not called
        row = await env.pool.fetchrow("SELECT next_attempt_at, last_error FROM push_jobs")
        assert row["last_error"] == "paused"
        assert row["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=30)

        async with env.pool.acquire() as conn:
            await pauses.resume(conn, ctx, target, ResumeRequest(direction="out"), now=now)
        due = await env.pool.fetchval("SELECT next_attempt_at <= now() FROM push_jobs")
        assert due is True
        jobs = (await claim(env.pool, 10, lease_seconds=5)).jobs
        for job in jobs:
            await env.pusher.run(job)
        assert await env.queued() == []
        assert [c["Name"] for c in crm.sim.live("customer")] == ["Harbour Plumbing"]
    finally:
        await crm.runner.cleanup()


@pytest.fixture
async def two(admin: Admin) -> tuple[str, str]:
    return (await new_connection(admin, "xero"))["id"], (await new_connection(admin, "stripe"))[
        "id"
    ]


async def test_the_api_pauses_resumes_and_schedules_windows(
    admin: Admin, two: tuple[str, str]
) -> None:
    xero, stripe_id = two
    health = await admin.ok("GET", f"/v1/connections/{xero}/health")
    assert (health["paused_inbound"], health["paused_outbound"]) == (False, False)
    paused = await admin.ok("POST", f"/v1/connections/{xero}/pause", json={"direction": "out"})
    assert (paused["inbound"], paused["outbound"], paused["kind"]) == (False, True, "pause")
    health = await admin.ok("GET", f"/v1/connections/{xero}/health")
    assert (health["paused_inbound"], health["paused_outbound"]) == (False, True)
    resumed = await admin.ok("POST", f"/v1/connections/{xero}/resume", json={})
    assert [p["id"] for p in resumed["ended"]] == [paused["id"]]
    health = await admin.ok("GET", f"/v1/connections/{xero}/health")
    assert health["paused_outbound"] is False

    # A tenant-wide window in force pauses every connection; deleting it ends it now.
    now = datetime.now(UTC)
    window = await admin.ok(
        "POST",
        "/v1/freeze-windows",
        201,
        json={
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=8)).isoformat(),
            "reason": "the wedding",
        },
    )
    for connection_id in (xero, stripe_id):
        health = await admin.ok("GET", f"/v1/connections/{connection_id}/health")
        assert (health["paused_inbound"], health["paused_outbound"]) == (True, True)
    listed = await admin.ok("GET", "/v1/freeze-windows")
    assert [w["id"] for w in listed["items"]] == [window["id"]]
    await admin.ok("DELETE", f"/v1/freeze-windows/{window['id']}", 204)
    health = await admin.ok("GET", f"/v1/connections/{xero}/health")
    assert health["paused_inbound"] is False
    shown = await admin.ok("GET", f"/v1/freeze-windows/{window['id']}")
    assert shown["ends_at"] is not None  # ended, kept as a record
    assert (await admin.ok("GET", "/v1/freeze-windows"))["items"] == []
    assert (
        len((await admin.ok("GET", "/v1/freeze-windows", params={"include_past": "true"}))["items"])
        == 1
    )
    status, _ = await admin.call("DELETE", f"/v1/freeze-windows/{window['id']}")
    assert status == 409

    # A future window is not in force, and deleting it cancels it.
    future = await admin.ok(
        "POST",
        "/v1/freeze-windows",
        201,
        json={
            "connection": stripe_id,
            "direction": "in",
            "starts_at": (now + timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=2)).isoformat(),
        },
    )
    health = await admin.ok("GET", f"/v1/connections/{stripe_id}/health")
    assert health["paused_inbound"] is False
    await admin.ok("DELETE", f"/v1/freeze-windows/{future['id']}", 204)
    status, _ = await admin.call("GET", f"/v1/freeze-windows/{future['id']}")
    assert status == 404

    # Bad input: 422 per field, and nothing created.
    for body, loc in (
        ({"direction": "sideways"}, "/body/direction"),
        ({"until": (now - timedelta(hours=1)).isoformat()}, "/body/until"),
    ):
        status, problem = await admin.call("POST", f"/v1/connections/{xero}/pause", json=body)
        assert status == 422
        assert problem["errors"][0]["loc"] == loc
    status, _ = await admin.call(
        "POST",
        "/v1/freeze-windows",
        json={"starts_at": now.isoformat(), "ends_at": (now - timedelta(hours=1)).isoformat()},
    )
    assert status == 422
    # Each change is in the audit trail.
    actions = [e["action"] for e in (await admin.ok("GET", "/v1/audit-log"))["items"]]
    assert actions[:5] == [
        "freeze_window.delete",
        "freeze_window.create",
        "freeze_window.delete",
        "freeze_window.create",
        "connection.resume",
    ]
