"""Replay: re-process a connection's webhooks after a mapping fix.

The envelopes of ``webhooks.raw`` from a time (``offsets_for_times``) or an offset on are
read up to the end the topic had when the replay started, the connection's own are
produced again to ``webhooks.raw`` with their key and headers, and the processor takes
them as new deliveries: events it already applied are dropped by its dedup, events it
dead-lettered (the reason for a replay) are applied now.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from crmsync.application import connections
from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import InvalidError, UnavailableError
from crmsync.application.kafka_io import KAFKA_TIMEOUT_SECONDS, Record, Send, producer
from crmsync.application.models import ReplayPartition, ReplayRequest, ReplayResult
from crmsync.common.db import Conn
from crmsync.common.kafka import make_consumer
from schemas.topics import REPRODUCED_HEADER, WEBHOOKS_RAW

# Records produced per acknowledged batch.
BATCH = 500
# A replay answers within this long (an HTTP client waits for it); what is left is
# reported as truncated and can be replayed from the offsets returned.
MAX_SECONDS = 120.0


def _connection_of(value: bytes | None) -> str | None:
    try:
        envelope = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    found = envelope.get("connection_id") if isinstance(envelope, dict) else None
    return found if isinstance(found, str) else None


def _marked(headers: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The record's headers plus the mark that tells the ledger it is a copy: what ingest
    accepted is counted once, however often an operator replays it."""
    kept = [(k, v) for k, v in headers or () if k != REPRODUCED_HEADER]
    return [*kept, (REPRODUCED_HEADER, b"replay")]


@audited("connection.replay")
async def replay(conn: Conn, ctx: Context, body: ReplayRequest) -> ReplayResult:
    await connections.require(conn, ctx, body.connection)
    topic = ctx.kafka.topic(WEBHOOKS_RAW.name)
    consumer = make_consumer(ctx.kafka.bootstrap_servers, group_id=None)
    try:
        try:
            await asyncio.wait_for(consumer.start(), KAFKA_TIMEOUT_SECONDS)
            # A fresh consumer knows no topic yet; ask the cluster (aiokafka has no public
            # call returning partitions after a metadata fetch).
            metadata = await consumer._client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            raise UnavailableError(f"Kafka unreachable: {exc}") from None
        partitions = metadata.partitions_for_topic(topic)
        if not partitions:
            raise UnavailableError(f"topic {topic} does not exist")
        if body.partition is not None and body.partition not in partitions:
            raise InvalidError(
                "no such partition",
                loc="/body/partition",
                msg=f"{topic} has partitions 0..{max(partitions)}",
            )
        tps = [
            TopicPartition(topic, p)
            for p in sorted(partitions)
            if body.partition is None or p == body.partition
        ]
        consumer.assign(tps)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        starts = await _starts(consumer, tps, ends, body)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        async with producer(ctx.kafka) as send:
            counts = await _copy(consumer, send, starts, ends, body)
    finally:
        await consumer.stop()
    return ReplayResult(
        connection_id=body.connection,
        topic=topic,
        scanned=counts.scanned,
        matched=counts.matched,
        produced=counts.produced,
        truncated=counts.truncated,
        partitions=[
            ReplayPartition(partition=tp.partition, start_offset=starts[tp], end_offset=ends[tp])
            for tp in tps
        ],
    )


async def _starts(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    ends: dict[TopicPartition, int],
    body: ReplayRequest,
) -> dict[TopicPartition, int]:
    """Where each partition's replay starts: the first offset at or after ``since``, or
    ``from_offset`` clamped to what the log still holds."""
    if body.since is not None:
        stamp = int(body.since.timestamp() * 1000)
        found = await consumer.offsets_for_times(dict.fromkeys(tps, stamp))
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}
    assert body.from_offset is not None  # noqa: S101 - the model requires one of them
    begins: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
    return {tp: min(max(body.from_offset, begins[tp]), ends[tp]) for tp in tps}


@dataclass
class _Counts:
    scanned: int = 0
    matched: int = 0
    produced: int = 0
    truncated: bool = False


async def _copy(
    consumer: AIOKafkaConsumer,
    send: Send,
    starts: dict[TopicPartition, int],
    ends: dict[TopicPartition, int],
    body: ReplayRequest,
) -> _Counts:
    """Read each partition up to its end offset; re-produce the connection's envelopes."""
    wanted = str(body.connection)
    remaining = {tp for tp in starts if starts[tp] < ends[tp]}
    # The next offset not yet looked at, per partition (the consumer's position runs
    # ahead: it counts what was fetched, not what was processed).
    upto = dict(starts)
    counts = _Counts()
    pending: list[Record] = []
    deadline = time.monotonic() + MAX_SECONDS
    while remaining and not counts.truncated:
        if time.monotonic() > deadline:
            counts.truncated = True
            break
        try:
            batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=BATCH)
        except KafkaError as exc:
            raise UnavailableError(f"reading webhooks failed: {exc}") from None
        for tp, messages in batch.items():
            for m in messages:
                if m.offset >= ends[tp] or counts.truncated:
                    break
                upto[tp] = m.offset + 1
                counts.scanned += 1
                if _connection_of(m.value) == wanted:
                    counts.matched += 1
                    pending.append((tp.topic, m.key, m.value, _marked(m.headers)))
                    counts.truncated = counts.matched >= body.max_records
        if not counts.truncated:
            for tp in list(remaining):
                # Transaction markers and compacted gaps hold offsets no message has.
                if upto[tp] >= ends[tp] or await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        if len(pending) >= BATCH or counts.truncated or not remaining:
            await send(pending)
            counts.produced += len(pending)
            pending = []
    # Stopped by max_records exactly at the end of every partition: nothing was left out.
    counts.truncated = counts.truncated and any(upto[tp] < ends[tp] for tp in remaining)
    return counts
