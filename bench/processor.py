"""Processor: canonical upserts/s from a pre-filled topic, against the same rows written by
a bare asyncpg batched upsert.

The topic ``changes.internal`` is filled with N new-customer changes of one internal
connection before ``python -m services.processor`` starts; the rate is counted from the
first committed batch to the last (start-up and the consumer group's join excluded;
the wall time including them is reported too). The baseline then writes the very rows
the processor wrote (data and field metadata, new ids, another tenant) with one
``INSERT … ON CONFLICT DO UPDATE`` over ``unnest`` per batch of the processor's batch
size, one transaction each, on one connection: the apply step without dedup, matching,
merge, links, outbox and sync log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.harness import Run, add_connection, mean, scrape, wait_for_count
from bench.report import Result, Target
from crmsync.common.kafka import make_producer
from crmsync.settings.processor import ProcessorSettings
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange

# ProcessorSettings.processor_batch_size's default: the baseline batches the same way.
BATCH: int = ProcessorSettings.model_fields["processor_batch_size"].default
# The targets: >= 5,000 upserts/s and >= 30 % of the bare asyncpg baseline.
TARGETS = (Target(">=", 5000.0), Target(">=", 0.3, of_baseline=True))
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SEND_CHUNK = 5000

COUNT = "SELECT count(*) FROM customers WHERE tenant_id = $1"
UPSERT = """
    INSERT INTO customers AS c (id, tenant_id, data, field_meta)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[], $4::jsonb[])
    ON CONFLICT (id) DO UPDATE
       SET data = EXCLUDED.data, field_meta = EXCLUDED.field_meta,
           version = c.version + 1, updated_at = now()
"""


def change(tenant_id: uuid.UUID, connection_id: uuid.UUID, n: int) -> tuple[bytes, bytes]:
    """A new customer published by an internal service (~600 bytes)."""
    external_id = f"cust-{n:07d}"
    event = InternalChange(
        tenant_id=tenant_id,
        connection_id=connection_id,
        received_at=datetime.now(UTC),
        change=ChangeEvent(
            event_id=f"bench-{n}",
            entity_type="customer",
            op="upsert",
            external_id=external_id,
            occurred_at=T0 + timedelta(seconds=n),
            data={
                "name": f"Bench Electrical {n}",
                "email": f"accounts.{n}@bench-electrical.example",
                "phone": f"+61 2 5550 {n % 10000:04d}",
                "company": "Bench Electrical Pty Ltd",
                "address": {
                    "line1": f"{n % 400 + 1} George Street",
                    "city": "Sydney",
                    "region": "NSW",
                    "postal_code": "2000",
                    "country": "AU",
                },
                "notes": "Prefers morning visits.",
            },
        ),
    )
    return f"{tenant_id}:customer:{external_id}".encode(), event.model_dump_json().encode()


async def prefill(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = make_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        for start in range(0, len(records), SEND_CHUNK):
            futures = [
                await producer.send(topic, value, key=key)
                for key, value in records[start : start + SEND_CHUNK]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def run_processor(run: Run) -> list[Result]:
    n = run.sizes.processor_events
    async with run.stack("processor") as stack:
        internal = await add_connection(
            stack, run.keyring, tenant="bench-processor", provider="internal", name="internal"
        )
        run.say(f"processor: filling {stack.prefix}{topics.CHANGES_INTERNAL.name} with {n:,}")
        records = [change(internal.tenant_id, internal.id, i) for i in range(n)]
        await prefill(
            run.common.kafka_bootstrap_servers, stack.prefix + topics.CHANGES_INTERNAL.name, records
        )
        workers = run.workers
        run.say(f"processor: draining it ({workers} worker{'s' if workers > 1 else ''})")
        started = time.monotonic()
        processors = [stack.processor(n + 1) for n in range(workers)]
        first: list[tuple[int, float]] = []
        cpu_before = sum(p.cpu() for p in processors)
        db = await asyncpg.connect(stack.database_url)
        try:
            done, done_at = await wait_for_count(
                db,
                COUNT,
                n,
                internal.tenant_id,
                stall_seconds=60.0,
                on_first=lambda got, at: first.append((got, at)),
            )
            cpu = sum(p.cpu() for p in processors) - cpu_before
            metrics: dict[str, float] = {}
            for p in processors:
                for name, value in (await scrape(run, p)).items():
                    metrics[name] = metrics.get(name, 0.0) + value
            for p in processors:
                await p.stop()
            # From the first committed batch to the last; when everything landed in one
            # observation (a --quick run), from the start of the drain instead.
            if first and done_at > first[0][1] and done > first[0][0]:
                rate = (done - first[0][0]) / (done_at - first[0][1])
            else:
                rate = done / max(done_at - started, 1e-9)
            run.say("processor: baseline, bare asyncpg batched upsert of the same rows")
            baseline = await _baseline(db, internal.tenant_id)
        finally:
            await db.close()
    return [
        Result(
            "processor.upserts",
            rate,
            "upserts/s",
            baseline=baseline,
            targets=TARGETS,
            note=f"{done:,} of {n:,} applied, first batch to last; batch size {BATCH}",
        ),
        Result(
            "processor.drain_wall",
            done_at - started,
            "s",
            note="process start to the last event applied (start-up and group join included)",
        ),
        Result(
            "processor.cpu",
            1000 * cpu / max(1, done),
            "ms CPU/event",
            note=f"{100 * cpu / (done_at - started):.0f} % of a core over the drain"
            + (f", {run.workers} workers together" if run.workers > 1 else ""),
        ),
        Result(
            "processor.batch_size",
            mean(metrics, "crmsync_processor_batch_size"),
            "events",
            note="mean events per applied batch",
        ),
        Result(
            "processor.apply_time",
            1000 * mean(metrics, "crmsync_processor_apply_duration_seconds"),
            "ms",
            note="mean time to apply one batch (one Postgres transaction)",
        ),
    ]


async def _baseline(db: asyncpg.Connection, tenant_id: uuid.UUID) -> float:
    rows = await db.fetch(
        "SELECT data::text, field_meta::text FROM customers WHERE tenant_id = $1", tenant_id
    )
    other = await db.fetchval(
        "INSERT INTO tenants (slug, name) VALUES ('bench-baseline', 'bench-baseline') RETURNING id"
    )
    ids = [uuid.uuid4() for _ in rows]
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        async with db.transaction():
            await db.execute(
                UPSERT,
                ids[start : start + BATCH],
                [other] * len(chunk),
                [r[0] for r in chunk],
                [r[1] for r in chunk],
            )
    elapsed = time.perf_counter() - started
    return len(rows) / elapsed if elapsed > 0 else 0.0
