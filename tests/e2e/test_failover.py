"""Issue 18: work only one process does at a time fails over when that process is
SIGKILLed, within the time the README states. Real processes on a Kafka and PostgreSQL of
the test's own (the fault suite's isolated stack, ``tests/faults/stack.py``).

The outbox relay's case is a fault scenario (``relay-leader-sigkill`` in
``tests/faults/harness.py``, run by test_faults.py) because it is counted under load with
the fault ledger; here: a sync run (what the reconcile scheduler queues) and the
notifier's evaluation.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from connectors.standard_webhooks.signature import StandardWebhooksScheme
from crmsync.application.notifications import secret_context
from crmsync.application.notifier import EVALUATE_LOCK
from crmsync.application.sync import jobs
from crmsync.common.connections import mark_needs_reauth
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from crmsync.demo import sims
from crmsync.demo.sims import RunningSim
from tests.faults.stack import IsolatedStack, Proc, isolated_stack

pytestmark = pytest.mark.stack

# As the README states them. A sync run whose worker died on the same host is taken by
# another worker at its next look for work (services/outbound/syncs.py POLL_SECONDS, 2 s)
# — the owner's pid is gone; on another host, when its lease (60 s) runs out.
SYNC_FAILOVER_SECONDS = 5.0
# The notifier's evaluation (an advisory lock per pass): the next pass of any other worker,
# within one CRMSYNC_OUTBOUND_NOTIFY_INTERVAL_SECONDS (1 s here, 30 s by default), plus
# the evaluation and the delivery.
NOTIFY_INTERVAL_SECONDS = 1.0
NOTIFY_FAILOVER_SECONDS = NOTIFY_INTERVAL_SECONDS + 4.0
CUSTOMERS = 1000
# Ascora lists 100 a page: a page a second makes the run last ~10 s, time to kill it.
SLOW = {"rate": 1, "per_seconds": 1, "burst": 1}


@dataclass
class World:
    stack: IsolatedStack
    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    crm: RunningSim
    tenant_id: uuid.UUID
    connection_id: uuid.UUID


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    crm = await sims.start_simulator("ascora")
    crm.sim.seed(CUSTOMERS)
    crm.sim.webhook_url = None
    try:
        async with (
            isolated_stack(tmp_path / "stack", print) as stack,
            aiohttp.ClientSession() as session,
        ):
            pool = await create_pool(stack.database_url, max_size=4)
            try:
                connection_id = await sims.connect(
                    pool,
                    KeyRing.parse(stack.master_keys),
                    crm,
                    tenant="failover",
                    name="ascora",
                    ingest_url="http://127.0.0.1:9",
                    settings={"rate_limit": SLOW},
                )
                crm.sim.webhook_url = None
                tenant_id = await pool.fetchval("SELECT id FROM tenants WHERE slug = 'failover'")
                yield World(stack, session, pool, crm, tenant_id, connection_id)
            finally:
                await pool.close()
    finally:
        await crm.stop()


async def start(world: World, *procs: Proc) -> None:
    for proc in procs:
        proc.start()
    await asyncio.gather(*(p.wait_ready(world.session) for p in procs))


def owner_pid(owner: str | None) -> int | None:
    """The pid in a sync run's lease owner (``role:host:pid:nonce``)."""
    parts = (owner or "").split(":")
    return int(parts[2]) if len(parts) == 4 and parts[2].isdigit() else None


async def test_a_sync_run_resumes_on_another_worker_when_its_worker_is_killed(
    world: World,
) -> None:
    workers = [world.stack.outbound(f"outbound-{n}", outbound_sync_concurrency=2) for n in (1, 2)]
    await start(world, world.stack.processor(), *workers)
    job_id, _ = await jobs.queue(
        world.pool,
        tenant_id=world.tenant_id,
        connection_id=world.connection_id,
        kind="backfill",
        entity_types=["customer"],
        modified_since=None,
        requested_by="test",
    )
    by_pid = {w.proc.pid: w for w in workers if w.proc is not None}
    deadline = time.monotonic() + 60.0
    while True:
        row = await world.pool.fetchrow(
            "SELECT lease_owner, records_seen, status FROM sync_jobs WHERE id = $1", job_id
        )
        assert row["status"] in ("pending", "running"), row
        if row["records_seen"] > 0 and owner_pid(row["lease_owner"]) in by_pid:
            break
        assert time.monotonic() < deadline, f"the run never got going: {dict(row)}"
        await asyncio.sleep(0.05)
    victim = by_pid[owner_pid(row["lease_owner"])]  # type: ignore[index]
    seen_at_kill = row["records_seen"]
    await victim.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    survivor = next(w for w in workers if w is not victim)
    assert survivor.proc is not None
    while True:
        row = await world.pool.fetchrow(
            "SELECT lease_owner, status FROM sync_jobs WHERE id = $1", job_id
        )
        if owner_pid(row["lease_owner"]) == survivor.proc.pid or row["status"] != "running":
            break
        assert time.monotonic() - killed_at < 3 * SYNC_FAILOVER_SECONDS, dict(row)
        await asyncio.sleep(0.05)
    took = time.monotonic() - killed_at
    print(f"sync run: {victim.name} killed at {seen_at_kill} records seen; resumed in {took:.2f}s")
    assert took <= SYNC_FAILOVER_SECONDS, took

    deadline = time.monotonic() + 180.0
    while (
        status := await world.pool.fetchval("SELECT status FROM sync_jobs WHERE id = $1", job_id)
    ) == "running":
        assert time.monotonic() < deadline, "the resumed run never finished"
        await asyncio.sleep(0.5)
    assert status == "succeeded"
    # Every customer of the CRM once: the resumed run started from the checkpoint, and
    # what it listed again was deduplicated.
    for _ in range(120):
        counts = await world.pool.fetchrow(
            """
            SELECT count(*) AS records, count(DISTINCT email_normalized) AS emails
              FROM customers WHERE tenant_id = $1
            """,
            world.tenant_id,
        )
        if counts["records"] >= CUSTOMERS:
            break
        await asyncio.sleep(0.5)
    assert (counts["records"], counts["emails"]) == (CUSTOMERS, CUSTOMERS)


async def test_notifications_keep_being_evaluated_when_the_evaluating_worker_is_killed(
    world: World,
) -> None:
    received: list[str] = []

    async def endpoint(request: web.Request) -> web.Response:
        body = await request.json()
        received.append(body["type"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", endpoint)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        endpoint_id = uuid.uuid4()
        await world.pool.execute(
            """
            INSERT INTO notification_endpoints
                   (id, tenant_id, url, description, secret_encrypted)
            VALUES ($1, $2, $3, 'failover test', $4)
            """,
            endpoint_id,
            world.tenant_id,
            f"http://127.0.0.1:{port}/hook",
            KeyRing.parse(world.stack.master_keys).encrypt(
                StandardWebhooksScheme().generate_secret(), secret_context(endpoint_id)
            ),
        )
        workers = [
            world.stack.outbound(
                f"outbound-{n}", outbound_notify_interval_seconds=NOTIFY_INTERVAL_SECONDS
            )
            for n in (1, 2)
        ]
        await start(world, *workers)
        victim = (await world.stack.kill_lock_holder(EVALUATE_LOCK, workers)).name
        killed_at = time.monotonic()
        # A condition that holds from now on: the survivor must find and announce it.
        await mark_needs_reauth(world.pool, world.connection_id, tenant_id=world.tenant_id)
        while "connection.needs_reauth" not in received:
            assert time.monotonic() - killed_at < 3 * NOTIFY_FAILOVER_SECONDS, received
            await asyncio.sleep(0.05)
        took = time.monotonic() - killed_at
        print(f"notifier: {victim} killed holding the evaluation; announced in {took:.2f}s")
        assert took <= NOTIFY_FAILOVER_SECONDS, took
    finally:
        await runner.cleanup()
