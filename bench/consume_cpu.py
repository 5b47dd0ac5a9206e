"""faust's delivery path alone: CPU per record from Kafka to a ``take_batches`` batch.

``python -m bench.consume_cpu [--events N] [--pairs P]`` fills a ``changes.internal`` topic
of its own (``bench.stack.scratch_topics``: its production partitions; the processor
section's ~600-byte changes) and drains it with a faust worker
whose only agent takes batches as the processor's apply agents do
(``services.processor.batches.take_batches``, the processor's batch settings) and does
nothing with them: no PostgreSQL, no relay. Each run is a worker process of its own, with
faust's stock consumer (``stock``) or the processor's (``batch``,
``services.processor.consumer``), alternated ``P`` times, and prints the worker's CPU per
record (every thread of the process, from its first batch to its last). The whole
processor's figures come from ``bench/run --only processor``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.processor import change, prefill
from bench.stack import scratch_topics
from crmsync.common.settings import CommonSettings
from schemas import topics

VARIANTS = ("stock", "batch")


def worker(variant: str, topic: str, events: int, out: Path) -> None:
    """The worker process: drain ``topic`` and write ``cpu_seconds records`` to ``out``."""
    import faust  # noqa: PLC0415 - only the worker process needs faust

    from crmsync.settings.processor import ProcessorSettings  # noqa: PLC0415
    from services.processor.__main__ import quiet_collector  # noqa: PLC0415
    from services.processor.app import broker_url  # noqa: PLC0415
    from services.processor.batches import take_batches  # noqa: PLC0415
    from services.processor.consumer import install  # noqa: PLC0415

    # The processor's batch settings as shipped (their defaults), this stack's Kafka.
    shipped = {n: f.default for n, f in ProcessorSettings.model_fields.items()}
    app = faust.App(
        # Under the topics' prefix: scratch_topics deletes faust's own topics with them.
        # A group of its own each run, so each reads the topic from its start.
        f"crmsync-{topic.removesuffix(topics.CHANGES_INTERNAL.name)}{variant}-{uuid.uuid4().hex}",
        broker=broker_url(CommonSettings().kafka_bootstrap_servers),
        store="memory://",
        datadir=str(out.parent / "faust"),
        autodiscover=False,
        web_enabled=False,
        topic_replication_factor=1,
    )
    if variant == "batch":
        # faust's own fetch wait, as the stock variant has: this compares delivery alone.
        install(app, fetch_max_wait_ms=1_500)
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")

    async def drain(stream: Any) -> None:
        seen, started = 0, 0.0
        async with take_batches(
            stream,
            shipped["processor_batch_size"],
            within=shipped["processor_batch_window_seconds"],
            quiet=shipped["processor_batch_quiet_seconds"],
        ) as batches:
            async for batch in batches:
                if not seen:
                    started = time.process_time()
                seen += len(batch)
                if seen >= events:
                    cpu = time.process_time() - started
                    # The last act of this process: nothing else runs on its loop any more.
                    out.write_text(f"{cpu} {seen - len(first)}\n")  # noqa: ASYNC240
                    os._exit(0)
                if seen == len(batch):
                    first[:] = batch

    first: list[Any] = []
    app.agent(source, name="drain")(drain)
    quiet_collector()
    w = faust.Worker(app, loglevel="WARNING", override_logging=False, quiet=True)
    w.spinner = None
    w.execute_from_commandline()


def run_pairs(events: int, pairs: int, topic: str) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(pairs):
            for variant in VARIANTS:
                out = Path(tmp) / f"{variant}-{pair}" / "out"
                out.parent.mkdir()
                subprocess.run(  # this very module, as a worker
                    [
                        sys.executable,
                        "-m",
                        "bench.consume_cpu",
                        "--events",
                        str(events),
                        "--worker",
                        variant,
                        topic,
                        str(out),
                    ],
                    check=True,
                    timeout=600,
                )
                cpu, records = out.read_text().split()
                figures[variant].append(1e6 * float(cpu) / int(records))
                print(f"{variant}: {figures[variant][-1]:.1f} µs CPU/record", flush=True)
    return figures


async def measure(events: int, pairs: int) -> dict[str, list[float]]:
    common = CommonSettings()
    prefix = f"cpu{uuid.uuid4().hex[:8]}."
    topic = prefix + topics.CHANGES_INTERNAL.name
    async with scratch_topics(common.kafka_bootstrap_servers, prefix):
        tenant, connection = uuid.uuid4(), uuid.uuid4()
        records = [change(tenant, connection, n) for n in range(events)]
        await prefill(common.kafka_bootstrap_servers, topic, records)
        # Each worker is a process of its own; this loop only waits for them.
        return await asyncio.to_thread(run_pairs, events, pairs, topic)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.consume_cpu", description=__doc__)
    p.add_argument("--events", type=int, default=50_000, help="records to drain")
    p.add_argument("--pairs", type=int, default=3, help="stock/batch pairs, alternated")
    p.add_argument("--worker", nargs=3, metavar=("VARIANT", "TOPIC", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.events, Path(args.worker[2]))
        return
    figures = asyncio.run(measure(args.events, args.pairs))
    for variant, values in figures.items():
        ordered = sorted(values)
        print(f"{variant}: median {ordered[len(ordered) // 2]:.1f} µs CPU/record of {values}")


if __name__ == "__main__":
    main()
