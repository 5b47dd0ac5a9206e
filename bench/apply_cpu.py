"""The apply step's CPU per change, without faust, Kafka or the outbox relay.

``python -m bench.apply_cpu [--events N] [--batch B] [--quiet-collector]`` makes a scratch
database (migrated, dropped afterwards), one internal connection, and N new-customer
changes (the processor section's, ``bench.processor.change``) spread over 8 partitions,
and hands them to ``Processor.handle`` B at a time (split over the default two
transactions, as the agent does). It prints this process's CPU per change after a first
batch of warm-up. The whole processor's figures come from ``bench/run --only processor``;
this one holds batch sizes fixed, so an A/B of the apply step is not at the mercy of how
full a loaded machine lets batches get.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time

from bench.processor import change
from bench.stack import new_database_name, scratch_database
from crmsync.common.connections import create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.db import connect, create_pool
from crmsync.common.settings import CommonSettings
from crmsync.settings.processor import ProcessorSettings
from services.processor.__main__ import quiet_collector
from services.processor.deadletters import Source
from services.processor.pipeline import Processor

# The bench topic's partition count: a batch splits over partitions into transactions.
PARTITIONS = 8


async def measure(events: int, batch: int) -> tuple[float, float, int]:
    """CPU and wall seconds per change, and how many changes were measured."""
    common = CommonSettings()
    keyring = KeyRing.parse("bench:" + base64.b64encode(os.urandom(32)).decode())
    async with scratch_database(common, new_database_name()) as url:
        conn = await connect(url)
        try:
            internal = await create_connection(
                conn,
                keyring,
                tenant="bench-apply",
                provider="internal",
                name="internal",
                webhook_secret=None,
            )
        finally:
            await conn.close()
        sources = [
            Source("changes.internal", i % PARTITIONS, i // PARTITIONS, key, value)
            for i, (key, value) in enumerate(
                change(internal.tenant_id, internal.id, n) for n in range(events)
            )
        ]
        pool = await create_pool(url, max_size=4)
        try:
            concurrency = ProcessorSettings.model_fields["processor_apply_concurrency"].default
            processor = Processor(pool, concurrency=concurrency)
            await processor.handle("changes.internal", sources[:batch])  # warm-up
            cpu, wall = time.process_time(), time.perf_counter()
            for start in range(batch, events, batch):
                await processor.handle("changes.internal", sources[start : start + batch])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            await pool.close()
    measured = max(1, events - batch)
    return cpu / measured, wall / measured, measured


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.apply_cpu", description=__doc__)
    p.add_argument("--events", type=int, default=10_000, help="changes to apply")
    p.add_argument("--batch", type=int, default=500, help="changes per Processor.handle")
    p.add_argument(
        "--quiet-collector",
        action="store_true",
        help="freeze the start-up heap and raise the young threshold, as the processor does",
    )
    args = p.parse_args()
    if args.quiet_collector:
        quiet_collector()
    cpu, wall, n = asyncio.run(measure(args.events, args.batch))
    print(
        f"batch {args.batch}: {1000 * cpu:.4f} ms CPU per change,"
        f" {1000 * wall:.4f} ms wall ({n:,} changes)"
    )


if __name__ == "__main__":
    main()
