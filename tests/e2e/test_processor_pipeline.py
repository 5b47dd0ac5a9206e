"""The processor worker end to end on the real Kafka and PostgreSQL: changes in, records
and records.changed out; bad input parked; SIGKILL mid-stream loses and repeats nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crmsync.common.connections import CreatedConnection
from crmsync.common.kafka import (
    make_consumer,
    make_producer,
)
from crmsync.localstack.ports import free_port
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange
from tests.conftest import started
from tests.e2e.helpers import stop, wait_until_ready
from tests.integration.test_apply import connect

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def start_worker(
    database_url: str, kafka_bootstrap: str, prefix: str, tmp_path: Path, port: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRMSYNC_KAFKA_TOPIC_PREFIX": prefix,
        "CRMSYNC_PROCESSOR_APP_ID": f"crmsync-{prefix}processor",
        "CRMSYNC_PROCESSOR_PORT": str(port),
        "CRMSYNC_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        "CRMSYNC_PROCESSOR_BATCH_SIZE": "50",
        "CRMSYNC_LOG_FORMAT": "json",
        "CRMSYNC_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "services.processor"], env=env)


def change_bytes(conn: Any, n: int, *, external_id: str | None = None) -> tuple[bytes, bytes]:
    event = InternalChange(
        tenant_id=conn.tenant_id,
        connection_id=conn.id,
        received_at=datetime.now(UTC),
        change=ChangeEvent(
            event_id=f"evt-{n}",
            entity_type="customer",
            op="upsert",
            external_id=external_id or f"c-{n}",
            occurred_at=T0 + timedelta(seconds=n),
            data={"name": f"Customer {n}", "email": f"c{n}@example.test"},
        ),
    )
    key = f"{conn.tenant_id}:customer:{external_id or f'c-{n}'}".encode()
    return key, event.model_dump_json().encode()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    async with started(make_producer(bootstrap)) as producer:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()


async def wait_for(pool: asyncpg.Pool, sql: str, want: int, seconds: float = 60) -> int:
    got = -1
    for _ in range(int(seconds / 0.25)):
        got = int(await pool.fetchval(sql))
        if got >= want:
            return got
        await asyncio.sleep(0.25)
    return got


async def wait_for_empty(pool: asyncpg.Pool, table: str, seconds: float = 60) -> bool:
    for _ in range(int(seconds / 0.25)):
        if not await pool.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):  # noqa: S608
            return True
        await asyncio.sleep(0.25)
    return False


async def read_changed(bootstrap: str, topic: str, want: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async with started(make_consumer(bootstrap, topic, group_id=f"{topic}.reader")) as consumer:
        for _ in range(40):
            batch = await consumer.getmany(timeout_ms=500)
            found += [json.loads(r.value) for rs in batch.values() for r in rs]
            if len(found) >= want:
                break
    return found


@dataclass
class Pipeline:
    """What a test of the worker runs against: the connection whose changes it produces,
    this test's topics (under ``prefix``), and a worker to start on them at ``port``."""

    conn: CreatedConnection
    kafka_bootstrap: str
    database_url: str
    prefix: str
    data_dir: Path
    port: int

    async def produce(self, records: list[tuple[bytes, bytes]]) -> None:
        """``records`` produced to the internal changes topic the worker consumes."""
        await produce(self.kafka_bootstrap, self.prefix + topics.CHANGES_INTERNAL.name, records)

    async def start_worker(self) -> subprocess.Popen[bytes]:
        return await asyncio.to_thread(
            start_worker,
            self.database_url,
            self.kafka_bootstrap,
            self.prefix,
            self.data_dir,
            self.port,
        )

    async def changed(self, want: int) -> list[dict[str, Any]]:
        """What the worker published to records.changed: ``want`` of them, or all in 20 s."""
        return await read_changed(
            self.kafka_bootstrap, self.prefix + topics.RECORDS_CHANGED.name, want
        )


@pytest.fixture
async def pipeline(
    kafka_bootstrap: str, database_url: str, pool: asyncpg.Pool, topic_prefix: str, tmp_path: Path
) -> Pipeline:
    conn = await connect(pool, "acme", "internal")
    return Pipeline(conn, kafka_bootstrap, database_url, topic_prefix, tmp_path, free_port())


async def test_changes_become_records_and_are_published(
    pool: asyncpg.Pool, pipeline: Pipeline
) -> None:
    conn = pipeline.conn
    await pipeline.produce(
        [change_bytes(conn, 1), (b"junk", b"\xff garbage"), change_bytes(conn, 2)]
    )
    proc = await pipeline.start_worker()
    try:
        await asyncio.to_thread(wait_until_ready, f"http://127.0.0.1:{pipeline.port}/readyz", proc)
        assert await wait_for(pool, "SELECT count(*) FROM customers", 2) == 2
        assert await wait_for(pool, "SELECT count(*) FROM dead_letters", 1) == 1
        # The relay deletes a row once Kafka acknowledged it.
        assert await wait_for_empty(pool, "outbox")
    finally:
        assert await asyncio.to_thread(stop, proc) == 0
    changed = await pipeline.changed(2)
    assert sorted(c["state"]["name"] for c in changed) == ["Customer 1", "Customer 2"]
    assert {c["version"] for c in changed} == {1}


@pytest.mark.stack
async def test_sigkill_mid_stream_applies_every_event_exactly_once(
    pool: asyncpg.Pool, pipeline: Pipeline
) -> None:
    total = 3000
    await pipeline.produce([change_bytes(pipeline.conn, n) for n in range(total)])
    proc = await pipeline.start_worker()
    # Kill it hard once part of the stream is applied: mid-batch, offsets uncommitted.
    applied = await wait_for(pool, "SELECT count(*) FROM customers", 300)
    assert applied >= 300
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert int(await pool.fetchval("SELECT count(*) FROM customers")) < total, "too late to kill"

    again = await pipeline.start_worker()
    try:
        assert await wait_for(pool, "SELECT count(*) FROM customers", total, 120) == total
        assert await wait_for_empty(pool, "outbox", 60)  # every change published
    finally:
        assert await asyncio.to_thread(stop, again) == 0
    assert await pool.fetchval("SELECT count(*) FROM processed_events") == total
    assert await pool.fetchval("SELECT max(version) FROM customers") == 1  # one change each
    changed = await pipeline.changed(total)
    # Every committed change is published; a republish after the kill is allowed, a gap not.
    assert {(c["entity_id"], c["version"]) for c in changed} == {
        (str(r["id"]), 1) for r in await pool.fetch("SELECT id FROM customers")
    }
