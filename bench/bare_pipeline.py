"""The floor the end-to-end figures stand on: the same three hops with nothing of ours.

``python -m bench.bare_pipeline ROLE PORT`` (``ingest``, ``processor`` or ``outbound``),
configured by the same ``CRMSYNC_*`` variables as the services (database, Kafka, topic
prefix). Issue 18 asks for each process's CPU per event against the sum of bare
baselines; and a latency target means little until it is known what this machine does
with no logic at all. Each role does what its service must do at the least, with the
same libraries and the same durability, and nothing else:

- ``ingest``: reads the body, hands it to Kafka (acks=all, idempotent, the same 2 ms
  linger as ingest's producer) and answers 200 once Kafka acknowledged it. No signature,
  no envelope, no rate limit.
- ``processor``: one aiokafka consumer; per fetch, one transaction that upserts every
  customer (one ``INSERT … SELECT FROM unnest … ON CONFLICT DO UPDATE``), then one
  record a change to ``bare.changed`` (acks=all), then the offset commit. No faust, no
  dedup, no links, no merge, no sync log, no outbox.
- ``outbound``: one aiokafka consumer; every record is POSTed to the target simulator's
  customers (32 at a time, the outbound's default), then the offset commit. No push
  queue, no leases, no budget, no bookkeeping.

Each role answers ``GET /stats`` with its latencies (ms from ingest's acceptance, a wall
clock stamp carried in a record header: committed for the processor, answered by the
target for outbound) and ``GET /readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from crmsync.common.kafka import make_producer
from crmsync.common.settings import CommonSettings, load_settings

Role = Callable[[], Coroutine[Any, Any, None]]
Handler = Callable[[web.Request], Coroutine[Any, Any, web.Response]]

RAW = "bare.raw"
CHANGED = "bare.changed"
STAMP = "received_ms"
# Outbound's pushes in flight (``CRMSYNC_OUTBOUND_CONCURRENCY``'s default).
PUSHES_IN_FLIGHT = 32
# The table the processor role writes: the columns a customer upsert needs, no more.
TABLE = """
    CREATE TABLE IF NOT EXISTS bare_customers (
        id text PRIMARY KEY, data jsonb NOT NULL, received_at timestamptz NOT NULL
    )
"""
UPSERT = """
    INSERT INTO bare_customers (id, data, received_at)
    SELECT i, d::jsonb, to_timestamp(r / 1000.0)
      FROM unnest($1::text[], $2::text[], $3::float8[]) AS w(i, d, r)
    ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, received_at = EXCLUDED.received_at
"""


def _topic(common: CommonSettings, name: str) -> str:
    return f"{common.kafka_topic_prefix}{name}"


def _stamp(record: ConsumerRecord[bytes, bytes]) -> float:
    return float(dict(record.headers)[STAMP].decode())


async def _serve(
    port: int, latencies: list[float], role: Role | None = None, accept: Handler | None = None
) -> None:
    """Serve /readyz and /stats (and ``accept`` for every POST) until SIGTERM, running
    ``role`` meanwhile."""

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response({"latencies_ms": latencies})

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/readyz", ready)
    if accept is not None:
        app.router.add_post("/{tail:.*}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    waits: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if role is not None:
        waits.append(asyncio.create_task(role()))
    await asyncio.wait(waits, return_when="FIRST_COMPLETED")
    for task in waits:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await runner.cleanup()


async def ingest(common: CommonSettings, port: int) -> None:
    producer = make_producer(common.kafka_bootstrap_servers)
    await producer.start()

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        headers = [(STAMP, str(time.time() * 1000).encode())]
        await producer.send_and_wait(_topic(common, RAW), body, headers=headers)
        return web.json_response({"status": "accepted"})

    try:
        await _serve(port, [], accept=accept)
    finally:
        await producer.stop()


def _consumer(common: CommonSettings, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        _topic(common, topic),
        bootstrap_servers=common.kafka_bootstrap_servers,
        group_id=f"{common.kafka_topic_prefix}bare-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _fetched(consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
    """What one fetch brought, every partition's records in one list (none after 1 s)."""
    fetched = await consumer.getmany(timeout_ms=1000)
    return [record for batch in fetched.values() for record in batch]


async def processor(common: CommonSettings, port: int) -> None:
    latencies: list[float] = []
    pool = await asyncpg.create_pool(common.database_url, min_size=1, max_size=2)
    await pool.execute(TABLE)
    consumer = _consumer(common, RAW)
    producer = make_producer(common.kafka_bootstrap_servers, linger_ms=0)
    await consumer.start()
    await producer.start()

    async def run() -> None:
        while True:
            records = await _fetched(consumer)
            if not records:
                continue
            rows = [json.loads(r.value or b"{}")["data"] for r in records]
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    UPSERT,
                    [row["customerId"] for row in rows],
                    [json.dumps(row) for row in rows],
                    [_stamp(r) for r in records],
                )
            done = time.time() * 1000
            latencies.extend(done - _stamp(r) for r in records)
            sent = [
                await producer.send(_topic(common, CHANGED), r.value, headers=list(r.headers))
                for r in records
            ]
            await asyncio.gather(*sent)
            await consumer.commit()

    try:
        await _serve(port, latencies, run)
    finally:
        await consumer.stop()
        await producer.stop()
        await pool.close()


async def outbound(common: CommonSettings, port: int, target: str) -> None:
    latencies: list[float] = []
    consumer = _consumer(common, CHANGED)
    await consumer.start()
    slots = asyncio.Semaphore(PUSHES_IN_FLIGHT)
    headers = {"Authorization": "Bearer sim-token", "X-Company-Code": "DEMO"}
    session = aiohttp.ClientSession(headers=headers)

    async def push(record: ConsumerRecord[bytes, bytes]) -> None:
        data = dict(json.loads(record.value or b"{}")["data"])
        for own in ("customerId", "dateCreated", "lastModified"):
            data.pop(own, None)
        async with slots, session.post(f"{target}/api/v1/customers", json=data) as response:
            await response.read()
            response.raise_for_status()
        latencies.append(time.time() * 1000 - _stamp(record))

    async def run() -> None:
        while True:
            records = await _fetched(consumer)
            if records:
                await asyncio.gather(*(push(r) for r in records))
                await consumer.commit()

    try:
        await _serve(port, latencies, run)
    finally:
        await consumer.stop()
        await session.close()


def main() -> None:
    role, port = sys.argv[1], int(sys.argv[2])
    common = load_settings(CommonSettings)
    roles: dict[str, Role] = {
        "ingest": lambda: ingest(common, port),
        "processor": lambda: processor(common, port),
        "outbound": lambda: outbound(common, port, sys.argv[3]),
    }
    asyncio.run(roles[role]())


if __name__ == "__main__":
    main()
