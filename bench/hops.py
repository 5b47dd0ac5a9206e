"""Where an e2e event's time goes, hop by hop (issue 18: "find where the time goes").

Read back after the load, per event, from what the pipeline already writes: the Kafka
records' timestamps (``CreateTime``: when the producer's ``send`` took the record) on
``webhooks.raw``, ``changes.normalized`` and ``records.changed``, and the two
``sync_log`` rows. No service is changed for it. An event's times:

- ``received``: ingest accepted the webhook (the envelope's ``received_at``);
- ``raw``: ingest handed it to its producer (webhooks.raw);
- ``normalized``: the processor's normalize lane produced its change, after fetching
  the webhook, hydrating it from the source CRM (changes.normalized);
- ``committed``: the apply step's sync_log 'in' row (received + its latency);
- ``published``: the outbox relay handed it to its producer (records.changed);
- ``pushed``: outbound's sync_log 'out' row (the payload's ``committed_at`` + its
  latency): outbound consumed it, queued the push, claimed it and the target answered.

Each hop's share is the difference of two of these; the Kafka hops are inside the
differences (a record is appended a produce round trip after ``send``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench.harness import percentile
from bench.report import Result
from schemas import topics

HOPS = (
    ("ingest", "received", "raw"),
    ("normalize", "raw", "normalized"),
    ("apply", "normalized", "committed"),
    ("relay", "committed", "published"),
    ("outbound", "published", "pushed"),
)
SYNC_ROWS = """
    SELECT i.external_id, i.entity_id, i.latency_ms AS in_ms, o.latency_ms AS out_ms
      FROM sync_log i
      LEFT JOIN sync_log o ON o.entity_id = i.entity_id AND o.direction = 'out'
                          AND o.outcome = 'pushed' AND o.tenant_id = i.tenant_id
     WHERE i.tenant_id = $1 AND i.direction = 'in' AND i.outcome = 'applied'
"""


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def read_topic(bootstrap: str, name: str) -> list[tuple[float, dict[str, Any]]]:
    """Every record of ``name`` (all partitions, start to end): (timestamp s, JSON value)."""
    # No group: the consumer takes every partition of the topic, from the start.
    consumer = AIOKafkaConsumer(
        name, bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = list(consumer.assignment())
        if not parts:
            return []
        ends = await consumer.end_offsets(parts)
        out: list[tuple[float, dict[str, Any]]] = []
        left = {tp for tp in parts if ends[tp] > 0}
        deadline = time.monotonic() + 60.0
        while left and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, messages in batches.items():
                for m in messages:
                    out.append((m.timestamp / 1000, json.loads(m.value or b"{}")))
                if messages and messages[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return out
    finally:
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka 0.14's group-less coordinator lets its own cancelled task's
            # CancelledError out of stop(); only a cancellation of ours goes on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise


async def hop_results(
    name: str, bootstrap: str, prefix: str, pool: asyncpg.Pool, tenant_id: object
) -> list[Result]:
    """p50/p99 of each hop over the events that went all the way through."""
    raw = await read_topic(bootstrap, prefix + topics.WEBHOOKS_RAW.name)
    normalized = await read_topic(bootstrap, prefix + topics.CHANGES_NORMALIZED.name)
    published = await read_topic(bootstrap, prefix + topics.RECORDS_CHANGED.name)
    rows = [dict(r) for r in await pool.fetch(SYNC_ROWS, tenant_id)]
    return _summarise(name, spans_of(raw, normalized, published, rows))


Records = Sequence[tuple[float, dict[str, Any]]]


def spans_of(
    raw: Records, normalized: Records, published: Records, rows: Sequence[dict[str, Any]]
) -> dict[str, list[float]]:
    """Each hop's duration (ms) per event found in all three topics and both sync_log
    rows (``rows``: SYNC_ROWS). Kafka timestamps are whole ms: a hop can read -1 ms."""
    # The envelope and its change carry the same received_at: the join of the first hop.
    raw_at = {str(v["received_at"]): ts for ts, v in raw}
    # external id → (received, raw, normalized)
    by_external: dict[str, tuple[float, float, float]] = {}
    for ts, v in normalized:
        change = v.get("change")
        if isinstance(change, dict):
            stamp = str(v["received_at"])
            at = _epoch(stamp)
            by_external[str(change["external_id"])] = (at, raw_at.get(stamp, at), ts)
    by_entity = {str(v["entity_id"]): (ts, _epoch(str(v["committed_at"]))) for ts, v in published}
    spans: dict[str, list[float]] = {hop: [] for hop, _, _ in HOPS}
    for row in rows:
        ext, entity = str(row["external_id"]), str(row["entity_id"])
        if ext not in by_external or entity not in by_entity or row["out_ms"] is None:
            continue
        received, raw_ts, normalized_at = by_external[ext]
        published_at, committed_at = by_entity[entity]
        t = {
            "received": received,
            "raw": raw_ts,
            "normalized": normalized_at,
            "committed": received + row["in_ms"] / 1000,
            "published": published_at,
            "pushed": committed_at + row["out_ms"] / 1000,
        }
        for hop, start, end in HOPS:
            spans[hop].append((t[end] - t[start]) * 1000)
    return spans


def _summarise(name: str, spans: Mapping[str, Sequence[float]]) -> list[Result]:
    results = []
    for hop, _, _ in HOPS:
        values = spans[hop]
        if not values:
            continue
        results.append(
            Result(
                f"{name}.hop.{hop}.p50",
                percentile(values, 0.5),
                "ms",
                note=f"p99 {percentile(values, 0.99):.0f} ms over {len(values)} events",
            )
        )
    return results
