"""Issue 18: a connection whose hydrations wait for its provider's budget holds up no other
connection's webhooks (services.processor.lanes), and a processor killed while such a lane
holds unacknowledged webhooks loses none and applies none twice once restarted.

Xero's thin webhooks are hydrated within a budget of one call and then one every 12 s;
Ascora's are full. Every topic has one partition, so Ascora's webhooks sit in Kafka behind
a waiting Xero one: what the processor finished of them cannot be committed past it.
Latency is the sync log's: from ingest's receipt to the apply's commit.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from crmsync.common.kafka import make_admin
from crmsync.demo import sims
from crmsync.localstack.ports import free_port
from schemas import topics
from tests.conftest import prefixed_topics, started
from tests.e2e.helpers import stop, wait_until_ready
from tests.e2e.sync_harness import SimulatedCrm, simulated
from tests.e2e.test_processor_pipeline import start_worker
from tests.ingest_harness import Ingest, running_ingest

# One call, then one every 12 s: the second hydration waits ~12 s for its token, time
# enough on a loaded machine for Ascora's webhooks to go through, and a commit after them,
# while it waits.
SLOW_BUDGET = {"rate": 1, "per_seconds": 12, "burst": 1}
# What "does not delay" means here, generously: an unhindered webhook is committed in
# tens of milliseconds; the one behind the budget waits ~12 s.
FAST_BOUND_MS = 1000
SLOW_AT_LEAST_MS = 5000
ASCORA_EVENTS = 5
APP = "SELECT count(*) FROM sync_log WHERE direction = 'in' AND connection_id = $1"


@pytest.fixture
async def one_partition(kafka_bootstrap: str) -> AsyncIterator[str]:
    """A topic prefix whose topics have one partition each."""
    async with prefixed_topics(kafka_bootstrap, 1) as prefix:
        yield prefix


@dataclass
class World:
    ingest: Ingest
    xero: SimulatedCrm
    ascora: SimulatedCrm
    xero_id: uuid.UUID
    ascora_id: uuid.UUID
    tenant: str

    async def count(self, sql: str, *args: object) -> int:
        return int(await self.ingest.pool.fetchval(sql, *args))

    async def wait(self, sql: str, want: int, *args: object, seconds: float = 60.0) -> int:
        got = -1
        for _ in range(int(seconds / 0.05)):
            got = await self.count(sql, *args)
            if got >= want:
                return got
            await asyncio.sleep(0.05)
        return got

    async def latencies(self, connection_id: uuid.UUID) -> list[int]:
        rows = await self.ingest.pool.fetch(
            "SELECT latency_ms FROM sync_log WHERE direction = 'in' AND connection_id = $1"
            " ORDER BY id",
            connection_id,
        )
        return [int(r["latency_ms"]) for r in rows]

    async def xero_waits(self) -> None:
        """Xero's first contact goes through; its second waits for the budget."""
        self.xero.sim.create("customer", {"Name": "Xero One", "EmailAddress": "x1@lanes.example"})
        assert await self.wait(APP, 1, self.xero_id) == 1, "Xero's first contact not applied"
        self.xero.sim.create("customer", {"Name": "Xero Two", "EmailAddress": "x2@lanes.example"})
        await self.xero.sim.drained()  # its webhook is in Kafka: the lane holds it

    async def ascora_goes_by_waiting_xero(self) -> None:
        """While Xero's second webhook waits for the budget, every one Ascora sends is
        applied."""
        await self.xero_waits()
        await self.ascora_sends()
        got = await self.wait(APP, ASCORA_EVENTS, self.ascora_id, seconds=30)
        assert got == ASCORA_EVENTS, f"{got} of Ascora's {ASCORA_EVENTS} webhooks applied"

    async def ascora_sends(self) -> None:
        for n in range(ASCORA_EVENTS):
            self.ascora.sim.create(
                "customer", {"customerName": f"Ascora {n}", "emailAddress": f"a{n}@lanes.example"}
            )
            await asyncio.sleep(0.2)
        await self.ascora.sim.drained()


@pytest.fixture
async def world(
    database_url: str, kafka_bootstrap: str, one_partition: str
) -> AsyncIterator[World]:
    async with (
        simulated("xero") as xero,
        simulated("ascora", company_code="A") as ascora,
    ):
        async for ingest in running_ingest(
            database_url, kafka_bootstrap, kafka_topic_prefix=one_partition
        ):
            tenant = f"t-{uuid.uuid4().hex[:10]}"
            url = str(ingest.client.make_url("")).rstrip("/")

            xero_id, ascora_id = [
                await sims.connect(
                    ingest.pool,
                    ingest.keyring,
                    crm,
                    tenant=tenant,
                    name=crm.provider,
                    ingest_url=url,
                    settings=settings,
                )
                for crm, settings in (
                    (xero, {"rate_limit": SLOW_BUDGET}),
                    (ascora, {"company_code": "A"}),
                )
            ]
            yield World(ingest, xero, ascora, xero_id, ascora_id, tenant)


Start = Callable[[], Awaitable[subprocess.Popen[bytes]]]


@pytest.fixture
def start(database_url: str, kafka_bootstrap: str, one_partition: str, tmp_path: Path) -> Start:
    """``await start()``: a processor worker on the one-partition topics, once it is ready."""

    def ready() -> subprocess.Popen[bytes]:
        port = free_port()
        proc = start_worker(database_url, kafka_bootstrap, one_partition, tmp_path, port)
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", proc)
        return proc

    return functools.partial(asyncio.to_thread, ready)


async def committed_and_end(kafka_bootstrap: str, prefix: str) -> tuple[int, int]:
    """The processor group's committed offset of webhooks.raw, and its end offset."""
    topic = prefix + topics.WEBHOOKS_RAW.name
    async with started(make_admin(kafka_bootstrap)) as admin:
        offsets = await admin.list_consumer_group_offsets(f"crmsync-{prefix}processor")
    committed = max((m.offset for tp, m in offsets.items() if tp.topic == topic), default=0)
    async with started(AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)) as consumer:
        tp = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
    return committed, end


async def test_a_connection_waiting_for_its_provider_budget_does_not_delay_another(
    world: World, start: Start
) -> None:
    proc = await start()
    try:
        await world.ascora_goes_by_waiting_xero()
        assert await world.wait(APP, 2, world.xero_id, seconds=60) == 2, "Xero's second lost"
    finally:
        assert await asyncio.to_thread(stop, proc) == 0
    fast = await world.latencies(world.ascora_id)
    slow = await world.latencies(world.xero_id)
    print(f"received → committed (ms): Ascora {fast}, Xero {slow}")
    # The slow one really waited, and meanwhile the other connection went through.
    assert slow[1] >= SLOW_AT_LEAST_MS, f"Xero's second waited only {slow[1]} ms: {slow}"
    assert max(fast) < FAST_BOUND_MS, f"Ascora received → committed (ms): {fast}; Xero: {slow}"


async def test_a_processor_killed_while_a_lane_holds_unacknowledged_webhooks_loses_none(
    world: World, start: Start, kafka_bootstrap: str, one_partition: str
) -> None:
    proc = await start()
    try:
        await world.ascora_goes_by_waiting_xero()
        assert await world.count(APP, world.xero_id) == 1, "Xero's second did not wait"
        # faust commits every 2.8 s: give it the chance to commit what it must not.
        await asyncio.sleep(3.5)
        committed, end = await committed_and_end(kafka_bootstrap, one_partition)
        # Ascora's webhooks, finished, are held uncommitted behind Xero's waiting one.
        assert committed <= end - ASCORA_EVENTS - 1, (committed, end)
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    proc = await start()
    try:
        assert await world.wait(APP, 2, world.xero_id, seconds=90) == 2, "Xero's second lost"
        for _ in range(100):  # until the redelivered Ascora webhooks are committed past
            committed, end = await committed_and_end(kafka_bootstrap, one_partition)
            if committed == end:
                break
            await asyncio.sleep(0.3)
        assert committed == end, (committed, end)
    finally:
        assert await asyncio.to_thread(stop, proc) == 0
    pool = world.ingest.pool
    for connection_id, want in ((world.ascora_id, ASCORA_EVENTS), (world.xero_id, 2)):
        outcomes = await pool.fetch(
            "SELECT outcome, count(*) AS n FROM sync_log WHERE direction = 'in'"
            " AND connection_id = $1 GROUP BY outcome",
            connection_id,
        )
        applied = {r["outcome"]: r["n"] for r in outcomes}
        assert applied == {"applied": want}, (connection_id, applied)
    tenant_id = await pool.fetchval(
        "SELECT tenant_id FROM connections WHERE id = $1", world.ascora_id
    )
    customers = await pool.fetchval(
        "SELECT count(*) FROM customers WHERE tenant_id = $1", tenant_id
    )
    assert customers == ASCORA_EVENTS + 2
    # Each written once: a second apply of the same values would be a duplicate at best.
    versions = await pool.fetchval(
        "SELECT max(version) FROM customers WHERE tenant_id = $1", tenant_id
    )
    assert versions == 1
    dead = await pool.fetchval("SELECT count(*) FROM dead_letters WHERE tenant_id = $1", tenant_id)
    assert dead == 0
