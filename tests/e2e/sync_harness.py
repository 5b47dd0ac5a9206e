"""The whole pipeline in one test: ingest and outbound in process, the processor as a
worker process, provider simulators as real HTTP servers, all on the suite's Kafka
(under a test-only topic prefix) and the test's own database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from crmsync.application.context import KafkaTarget
from crmsync.application.ledger import Ledger
from crmsync.application.ledger_io import ledger
from crmsync.application.sync import jobs
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.settings import parse_settings
from crmsync.demo import sims
from crmsync.demo.sims import RunningSim
from crmsync.localstack.ports import free_port
from crmsync.settings.outbound import OutboundSettings
from services.outbound.app import create_app as create_outbound
from tests.e2e.helpers import stop, wait_until_ready
from tests.e2e.test_processor_pipeline import start_worker
from tests.ingest_harness import running_ingest


@dataclass
class SimulatedCrm(RunningSim):
    """A simulator of the demo's kit, with the request log views tests assert on."""

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.sim.log.requests if method is None or r["method"] == method]

    def writes(self) -> list[dict[str, Any]]:
        return [
            r for r in self.sim.log.requests if r["method"] in {"POST", "PUT", "PATCH", "DELETE"}
        ]


async def start_simulator(provider: str, **kwargs: Any) -> SimulatedCrm:
    running = await sims.start_simulator(provider, **kwargs)
    return SimulatedCrm(running.provider, running.sim, running.runner, running.base_url)


@contextlib.asynccontextmanager
async def simulated(provider: str, **kwargs: Any) -> AsyncIterator[SimulatedCrm]:
    """A simulator of ``provider`` serving for the block, stopped after it."""
    crm = await start_simulator(provider, **kwargs)
    try:
        yield crm
    finally:
        await crm.runner.cleanup()


@dataclass
class Stack:
    pool: asyncpg.Pool
    keyring: KeyRing
    ingest_url: str
    tenant: str
    # Ingest's public base URL, which the URL a simulator signs is under.
    public_url: str
    crms: list[SimulatedCrm] = field(default_factory=list)

    async def connect(
        self, crm: SimulatedCrm, name: str, settings: dict[str, Any] | None = None
    ) -> uuid.UUID:
        return await sims.connect(
            self.pool,
            self.keyring,
            crm,
            tenant=self.tenant,
            name=name,
            ingest_url=self.ingest_url,
            public_url=self.public_url,
            settings=settings,
        )

    async def add_connection(
        self, provider: str, name: str, webhook_secret: str | None = None, **fields: Any
    ) -> CreatedConnection:
        """A connection of the stack's tenant made as ``create_connection`` makes it
        (``fields``: its other arguments), not from a simulator's profile."""
        async with self.pool.acquire() as conn:
            return await create_connection(
                conn,
                self.keyring,
                tenant=self.tenant,
                provider=provider,
                name=name,
                webhook_secret=webhook_secret,
                **fields,
            )

    async def count(self, sql: str, *args: Any) -> int:
        return int(await self.pool.fetchval(sql, *args))

    async def wait(self, sql: str, want: int, *args: Any, seconds: float = 30.0) -> int:
        got = -1
        for _ in range(int(seconds / 0.1)):
            got = await self.count(sql, *args)
            if got == want:
                return got
            await asyncio.sleep(0.1)
        return got

    async def settled_ledger(
        self, kafka_bootstrap: str, topic_prefix: str, *, since: datetime
    ) -> Ledger:
        """The ledger of what the stack did since ``since``, read again every 0.5 s until
        it has settled (30 s at most): the caller asserts what it expects of it."""
        # The harness's group names (running_stack, test_processor_pipeline.start_worker).
        kafka = KafkaTarget(
            kafka_bootstrap,
            topic_prefix,
            processor_group=f"crmsync-{topic_prefix}processor",
            outbound_group=f"crmsync-{topic_prefix}outbound",
        )
        found = await ledger(self.pool, kafka, since=since)
        for _ in range(60):
            if found.settled:
                break
            await asyncio.sleep(0.5)
            found = await ledger(self.pool, kafka, since=since)
        return found

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter's reason and detail: a test that expects none shows them."""
        return [dict(d) for d in await self.pool.fetch("SELECT reason, detail FROM dead_letters")]

    async def quiet_after_echoes(self, *, customers: int, invoices: int, payments: int) -> None:
        """After 3 s, time for the polls and webhooks of what was pushed to come back: no
        dead letter, and still these many records of each kind (the echoes changed nothing)."""
        await asyncio.sleep(3)
        assert await self.dead_letters() == []
        assert await self.count("SELECT count(*) FROM customers") == customers
        assert await self.count("SELECT count(*) FROM invoices") == invoices
        assert await self.count("SELECT count(*) FROM payments") == payments

    async def backfill_brings_in_what_was_seeded(self, crm: SimulatedCrm) -> None:
        """Five records of each kind that the provider held before its connection
        (``crm.connection_id``; no webhooks) arrive by a queued backfill, and nothing is
        dead-lettered."""
        connection_id = crm.connection_id
        assert connection_id is not None, f"{crm.provider} is not connected"
        crm.sim.seed(5)
        tenant_id = await self.pool.fetchval(
            "SELECT tenant_id FROM connections WHERE id = $1", connection_id
        )
        _job, queued = await jobs.queue(
            self.pool,
            tenant_id=tenant_id,
            connection_id=connection_id,
            kind="backfill",
            entity_types=["customer", "invoice", "payment"],
            modified_since=None,
            requested_by="test",
        )
        assert queued
        assert await self.wait("SELECT count(*) FROM customers", 5, seconds=60) == 5
        assert await self.wait("SELECT count(*) FROM invoices", 5, seconds=60) == 5
        assert await self.wait("SELECT count(*) FROM payments", 5, seconds=60) == 5
        assert await self.dead_letters() == []


@contextlib.asynccontextmanager
async def running_stack(
    database_url: str,
    kafka_bootstrap: str,
    prefix: str,
    tmp_path: Path,
    **outbound: Any,
) -> AsyncIterator[Stack]:
    """``outbound``: OutboundSettings fields to override (e.g. outbound_sync_concurrency=0)."""
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    processor_port = free_port()
    worker: subprocess.Popen[bytes] | None = None
    outbound_client: TestClient[web.Request, web.Application] | None = None
    async for ingest in running_ingest(database_url, kafka_bootstrap, kafka_topic_prefix=prefix):
        try:
            worker = start_worker(database_url, kafka_bootstrap, prefix, tmp_path, processor_port)
            outbound_settings = parse_settings(
                OutboundSettings,
                database_url=database_url,
                kafka_bootstrap_servers=kafka_bootstrap,
                kafka_topic_prefix=prefix,
                outbound_consumer_group=f"crmsync-{prefix}outbound",
                master_keys=os.environ["CRMSYNC_MASTER_KEYS"],
                **outbound,
            )
            outbound_client = TestClient(TestServer(create_outbound(outbound_settings)))
            await outbound_client.start_server()
            await asyncio.to_thread(
                wait_until_ready, f"http://127.0.0.1:{processor_port}/readyz", worker
            )
            ingest_url = str(ingest.client.make_url("")).rstrip("/")
            yield Stack(
                ingest.pool,
                keyring,
                ingest_url,
                f"t-{uuid.uuid4().hex[:10]}",
                ingest.settings.ingest_public_base_url,
            )
        finally:
            if outbound_client is not None:
                await outbound_client.close()
            if worker is not None:
                await asyncio.to_thread(stop, worker)


# Outbound looks for due reconciliations every 0.5 s (10 s by default) and starts a poll 5 s
# before the last one (300 s): with ``POLLED_EVERY_SECOND`` a test of polling takes seconds.
QUICK_SCHEDULE: dict[str, Any] = {
    "outbound_schedule_check_seconds": 0.5,
    "outbound_reconcile_overlap_seconds": 5,
}
# A connection's settings: polled every second, listed in full never (by default every 15
# minutes, and once a day).
POLLED_EVERY_SECOND: dict[str, Any] = {
    "reconcile_interval_seconds": 1,
    "full_reconcile_interval_seconds": 0,
}


@dataclass(frozen=True)
class Crm:
    """A simulator to start (``simulator``: its keyword arguments) and connect as ``name``
    (the provider's slug if None) with ``settings``."""

    provider: str
    name: str | None = None
    settings: dict[str, Any] | None = None
    simulator: dict[str, Any] = field(default_factory=dict)


def ascora_company(company_code: str, name: str = "ascora") -> Crm:
    """An Ascora simulator of company ``company_code``, connected to that company."""
    return Crm("ascora", name, {"company_code": company_code}, {"company_code": company_code})


@contextlib.asynccontextmanager
async def synced(
    database_url: str,
    kafka_bootstrap: str,
    prefix: str,
    tmp_path: Path,
    *crms: Crm,
    **outbound: Any,
) -> AsyncIterator[tuple[Stack, list[SimulatedCrm]]]:
    """A running stack (``outbound``: as for ``running_stack``) syncing a simulator of each
    of ``crms``, each connected (its id in ``connection_id``): the stack and the simulators
    in the order of ``crms``. Everything is stopped after the block."""
    async with contextlib.AsyncExitStack() as started:
        simulators = [
            await started.enter_async_context(simulated(crm.provider, **crm.simulator))
            for crm in crms
        ]
        stack = await started.enter_async_context(
            running_stack(database_url, kafka_bootstrap, prefix, tmp_path, **outbound)
        )
        for crm, simulator in zip(crms, simulators, strict=True):
            simulator.connection_id = await stack.connect(
                simulator, crm.name or crm.provider, crm.settings
            )
        yield stack, simulators


# The e2e conftest's ``sync`` fixture: ``synced`` with the suite's Kafka, database and paths.
Sync = Callable[..., contextlib.AbstractAsyncContextManager[tuple[Stack, list[SimulatedCrm]]]]


@contextlib.asynccontextmanager
async def synced_with_ascora(
    database_url: str,
    kafka_bootstrap: str,
    prefix: str,
    tmp_path: Path,
    *,
    provider: str,
    name: str,
) -> AsyncIterator[tuple[Stack, SimulatedCrm, SimulatedCrm]]:
    """A running stack syncing ``provider``'s simulator (connected as ``name``) with a
    simulated Ascora (company A): the stack, that simulator, the Ascora one."""
    async with (
        simulated(provider) as crm,
        simulated("ascora", company_code="A") as ascora,
        running_stack(database_url, kafka_bootstrap, prefix, tmp_path) as stack,
    ):
        await stack.connect(crm, name)
        await stack.connect(ascora, "ascora", {"company_code": "A"})
        yield stack, crm, ascora


def square_invoice_body(
    number: str, customer_id: str, item: str, quantity: str, amount: int
) -> dict[str, Any]:
    """What a user makes in Square (its simulator's ``create("invoice", …)``): invoice
    ``number`` for ``customer_id``, issued 2026-12-01 and due in full 2026-12-31, of an
    order of one line (``amount``: its unit price in AUD cents), published."""
    return {
        "invoice": {
            "invoice_number": number,
            "sale_or_service_date": "2026-12-01",
            "primary_recipient": {"customer_id": customer_id},
            "payment_requests": [{"request_type": "BALANCE", "due_date": "2026-12-31"}],
        },
        "order": {
            "line_items": [
                {
                    "name": item,
                    "quantity": quantity,
                    "base_price_money": {"amount": amount, "currency": "AUD"},
                }
            ]
        },
        "publish": True,
    }


async def paid_at_square(
    stack: Stack, square: SimulatedCrm, amount: int, reference: str
) -> dict[str, Any]:
    """The tenant's one payment, made elsewhere, recorded at Square with its ``amount``
    (AUD cents) and ``reference``: Square's payment."""
    assert await stack.wait("SELECT count(*) FROM payments", 1) == 1
    await until(lambda: square.sim.live("payment"))
    [payment] = square.sim.live("payment")
    assert payment["amount_money"] == {"amount": amount, "currency": "AUD"}
    assert payment["reference_id"] == reference
    return payment


async def post_changes(ingest_url: str, api_key: str, changes: list[dict[str, Any]]) -> None:
    """``changes`` published to ingest's ``/v1/changes`` with an internal connection's
    ``api_key``; ingest must take them (202)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{ingest_url}/v1/changes",
            json=changes,
            headers={"Authorization": f"Bearer {api_key}"},
        ) as response,
    ):
        assert response.status == 202, await response.text()


async def until(check: Callable[[], Any], what: str = "the check", seconds: float = 30.0) -> Any:
    """``check()`` once it is truthy, polled every 0.1 s; not within ``seconds``, the test
    fails naming ``what``."""
    for _ in range(int(seconds / 0.1)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds} s: {what}")


async def eventually(check: Callable[[], Any], seconds: float = 30.0) -> Any:
    """``check()`` once it is truthy, polled every 0.1 s; its last answer after ``seconds``."""
    for _ in range(int(seconds / 0.1)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    return check()
