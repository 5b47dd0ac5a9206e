"""The ledger's edges: what Kafka and PostgreSQL hold, read in an order that keeps the
facts consistent while the pipeline runs, handed to the pure core in ``ledger``.

The order matters, because events move on while they are read:

1. the window's records: what ingest accepted on ``webhooks.raw`` and ``changes.internal``
   (``offsets_for_times`` at ``since`` up to the offsets at ``until``), and the changes
   on ``records.changed`` from ``since`` to the end;
2. the committed offsets of the processor's and outbound's consumer groups;
3. one PostgreSQL snapshot (repeatable read) of every fate: dedup rows, skips, dead
   letters, the outbox, links, the push queue;
4. what is still waiting past those offsets: normalised changes and re-produced copies
   not consumed yet, and changes relayed since step 1.

An event consumed before step 2 wrote its fate before its offset was committed, so the
snapshot holds it; one consumed after is still past the offset read in step 2. A webhook's
items reach ``changes.normalized`` before its envelope's offset is committed, so an item
not applied by step 3 is in the tail read in step 4. Only an event that was consumed and
left no fate counts as unaccounted.

Cost: one pass over the window's records (webhook bodies are mapped again by their pure
connector mapper to count their events), the tails, and one keyed query per fact.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from connectors.runtime import ConnectionInfo
from connectors.spec import MappingError, WebhookItem
from crmsync.application import connections as connection_ops
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.errors import UnavailableError
from crmsync.application.kafka_io import KAFKA_TIMEOUT_SECONDS
from crmsync.application.ledger import (
    Accepted,
    Committed,
    ConnectionLedger,
    InboundCounts,
    InboundFacts,
    Key,
    Ledger,
    OutboundCounts,
    OutboundFacts,
    Target,
    TargetInfo,
    classify_inbound,
    classify_outbound,
    unconsumed_notes,
)
from crmsync.application.models import LedgerQuery, LedgerReport
from crmsync.common.canonical import TABLES
from crmsync.common.connections import connection_rows
from crmsync.common.db import Conn
from crmsync.common.kafka import make_admin, make_consumer
from schemas import topics
from schemas.envelope import WebhookEnvelope

# The API's and the CLI's window when no ``since`` is given, as the sync-log summary's.
DEFAULT_WINDOW = timedelta(hours=24)
# A ledger over a long window reads much; it gives up (503) rather than hold a request.
MAX_SECONDS = 300.0
FETCH_RECORDS = 5000
# Keys looked up per statement: arrays of this many stay a few MB.
LOOKUP_CHUNK = 50_000
# The same cap the normaliser applies (services/processor/normalize.py, item_event_id):
# ChangeEvent.event_id holds at most 200 characters; longer item ids are hashed.
MAX_EVENT_ID = 200

# How far apart the clocks of ingest (Kafka timestamps) and PostgreSQL (now()) may be: NTP
# keeps hosts within milliseconds; minutes leave room for a badly kept one.
CLOCK_MARGIN = timedelta(minutes=5)

SOURCE_TOPICS = (topics.WEBHOOKS_RAW.name, topics.CHANGES_INTERNAL.name)


def item_event_id(item_id: str) -> str:
    """The dedup key of a webhook item, as the normaliser computes it (a unit test keeps
    the two equal: the processor is a service this one may not import)."""
    if len(item_id) <= MAX_EVENT_ID:
        return item_id
    return "sha256:" + hashlib.sha256(item_id.encode()).hexdigest()


def item_key(envelope: WebhookEnvelope, item: WebhookItem) -> str:
    """An item's dedup key as the normaliser computes it: a ``per_receipt`` item (a notice
    nothing tells from the next identical one) is keyed on the envelope that brought it."""
    if item.per_receipt:
        return item_event_id(f"{item.event_id}@{envelope.event_id}")
    return item_event_id(item.event_id)


# -- the API's and CLI's operation --------------------------------------------------------


async def audit(conn: Conn, ctx: Context, query: LedgerQuery, *, now: datetime) -> LedgerReport:
    if query.connection is not None:
        await connection_ops.require(conn, ctx, query.connection)
    found = await ledger(
        conn,
        ctx.kafka,
        tenant=ctx.tenant_id,
        connection=query.connection,
        since=query.since or now - DEFAULT_WINDOW,
        until=query.until,
        now=now,
    )
    return LedgerReport.of(found)


# -- the Python function ------------------------------------------------------------------


async def ledger(
    db: Conn | asyncpg.Pool,
    kafka: KafkaTarget | str,
    *,
    tenant: uuid.UUID | None = None,
    connection: uuid.UUID | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> Ledger:
    """The ledger of ``tenant`` (None: every tenant), or of one ``connection``, for events
    accepted and changes committed in [since, until). ``since`` None: all Kafka still
    holds; ``until`` None: now. ``kafka``: bootstrap servers, or a target naming the topic
    prefix and consumer groups."""
    target = KafkaTarget(kafka) if isinstance(kafka, str) else kafka
    until = until or now or datetime.now(UTC)
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            return await _ledger(
                conn, target, tenant=tenant, connection=connection, since=since, until=until
            )
    return await _ledger(db, target, tenant=tenant, connection=connection, since=since, until=until)


async def _ledger(
    conn: Conn,
    kafka: KafkaTarget,
    *,
    tenant: uuid.UUID | None,
    connection: uuid.UUID | None,
    since: datetime | None,
    until: datetime,
) -> Ledger:
    infos, created = await _connections(conn, tenant)
    reported = [i for i in infos if connection is None or i.id == connection]
    wanted = {i.id for i in reported}
    if not reported:
        # Ingest accepts only for a connection that exists, and a deleted one's rows are
        # gone with it: nothing to account for, and no reason to need Kafka for that.
        return Ledger(since=since, until=until, connections=[])
    reader = _Reader(kafka, deadline=time.monotonic() + MAX_SECONDS)
    await reader.start()
    try:
        # 1. the window
        window = _Window(infos, wanted)
        await window.read_inbound(reader, since, until)
        published, changes_end = await window.read_changes(reader, tenant, since, until)
        # 2. how far the consumers got
        processor = await reader.committed(kafka.processor_group)
        outbound = await reader.committed(kafka.outbound_group)
        # 3. every fate, in one snapshot
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            inbound_facts = await _inbound_facts(conn, tenant, since, infos, window.events)
            outbox = await _outbox(conn, tenant, since, until)
            # 4. what waits past the offsets of step 2 (read inside the snapshot's time:
            # nothing in it depends on the snapshot)
            waiting = await _waiting(reader, kafka, processor, window, since)
            relayed, _ = await window.read_changes(reader, tenant, since, until, start=changes_end)
            changes = _routed(published + relayed, outbound) + outbox
            outbound_facts = await _outbound_facts(conn, tenant, since, changes)
    finally:
        await reader.stop()
    facts = InboundFacts(
        processed=inbound_facts.processed,
        recorded_skips=inbound_facts.recorded_skips,
        not_synced=inbound_facts.not_synced,
        dead_records=inbound_facts.dead_records,
        dead_keys=inbound_facts.dead_keys,
        parked_keys=frozenset(inbound_facts.parked_keys),
        committed={(tp.topic, tp.partition): offset for tp, offset in processor.items()},
        waiting_records=waiting[0],
        waiting_keys=waiting[1],
    )
    inbound = classify_inbound(window.events, facts, since=since, records=window.records)
    notes = unconsumed_notes(
        kafka.processor_group, {(e.topic, e.partition) for e in window.events}, facts.committed
    ) + unconsumed_notes(
        kafka.outbound_group,
        {(tp.topic, tp.partition) for _, tp, _ in published},
        {(tp.topic, tp.partition): o for tp, o in outbound.items()},
    )
    targets = [
        TargetInfo(
            i.id,
            i.tenant_id,
            created[i.id],
            frozenset(t for t in TABLES if i.syncs("out", t)),
        )
        for i in infos
    ]
    pushes = classify_outbound(_unique(changes), targets, outbound_facts)
    return Ledger(
        since=since,
        until=until,
        connections=[
            ConnectionLedger(
                i.id,
                i.provider,
                i.name,
                inbound.get(i.id, InboundCounts()),
                pushes.get(i.id, OutboundCounts()),
            )
            for i in reported
        ],
        notes=notes,
    )


async def _connections(
    conn: Conn, tenant: uuid.UUID | None
) -> tuple[list[ConnectionInfo], dict[uuid.UUID, datetime]]:
    rows = await connection_rows(conn, tenant_id=tenant)
    return [ConnectionInfo.from_row(r) for r in rows], {r["id"]: r["created_at"] for r in rows}


# -- Kafka --------------------------------------------------------------------------------


class _Reader:
    """A group-less consumer that reads offset ranges, and the committed offsets of groups."""

    def __init__(self, kafka: KafkaTarget, *, deadline: float) -> None:
        self.kafka = kafka
        self.deadline = deadline
        self.consumer: AIOKafkaConsumer = make_consumer(
            kafka.bootstrap_servers,
            group_id=None,
            fetch_max_bytes=16 * 1024 * 1024,
            # Only ranges known to hold records are read: the broker need not wait for more
            # (its default 500 ms wait was most of a small ledger's time).
            fetch_max_wait_ms=10,
        )
        self.partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self.consumer.start(), KAFKA_TIMEOUT_SECONDS)
            # A fresh consumer knows no topic yet; ask the cluster (as replay does).
            metadata = await self.consumer._client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError) as exc:
            await self.consumer.stop()
            raise UnavailableError(f"Kafka unreachable: {exc}") from None
        names = [t.name for t in topics.ALL]
        for name in names:
            found = metadata.partitions_for_topic(self.kafka.topic(name))
            self.partitions[name] = [
                TopicPartition(self.kafka.topic(name), p) for p in sorted(found or ())
            ]

    async def stop(self) -> None:
        await self.consumer.stop()

    async def offsets_at(
        self, name: str, when: datetime | None, *, default_end: bool
    ) -> dict[TopicPartition, int]:
        """Per partition, the first offset at or after ``when`` (None: the log's start,
        or its end with ``default_end``); the end when nothing is that late."""
        tps = self.partitions[name]
        if not tps:
            return {}
        try:
            ends: dict[TopicPartition, int] = await self.consumer.end_offsets(tps)
            if when is None:
                if default_end:
                    return ends
                begins: dict[TopicPartition, int] = await self.consumer.beginning_offsets(tps)
                return begins
            stamp = int(when.timestamp() * 1000)
            found = await self.consumer.offsets_for_times(dict.fromkeys(tps, stamp))
        except (KafkaError, OSError) as exc:
            raise UnavailableError(f"Kafka offsets unavailable: {exc}") from None
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}

    async def ends(self, name: str) -> dict[TopicPartition, int]:
        return await self.offsets_at(name, None, default_end=True)

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        """The first offset ``group`` has not committed, per partition it committed on."""
        admin = make_admin(self.kafka.bootstrap_servers)
        try:
            await admin.start()
            found = await admin.list_consumer_group_offsets(group)
        except (KafkaError, OSError) as exc:
            raise UnavailableError(f"offsets of {group} unavailable: {exc}") from None
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    async def scan(
        self, ranges: dict[TopicPartition, tuple[int, int]]
    ) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """Every record in [start, end) of each partition."""
        todo = {tp for tp, (start, end) in ranges.items() if start < end}
        if not todo:
            return
        # Only these: the consumer fetches ahead on every partition it is assigned.
        self.consumer.assign(list(todo))
        for tp in todo:
            self.consumer.seek(tp, ranges[tp][0])
        while todo:
            if time.monotonic() > self.deadline:
                raise UnavailableError("the ledger took too long: narrow the window")
            try:
                batch = await self.consumer.getmany(
                    *todo, timeout_ms=1000, max_records=FETCH_RECORDS
                )
            except KafkaError as exc:
                raise UnavailableError(f"reading Kafka failed: {exc}") from None
            for tp, messages in batch.items():
                end = ranges[tp][1]
                for m in messages:
                    if m.offset >= end:
                        break
                    yield m
            for tp in list(todo):
                # Transaction markers hold offsets no message has: go by the position.
                if await self.consumer.position(tp) >= ranges[tp][1]:
                    todo.discard(tp)


def _others(message: ConsumerRecord[bytes, bytes], ours: set[bytes]) -> bool:
    """Whether the record's key says it is someone else's, so its value need not be parsed.

    Pipeline keys start with the id the record belongs to: a connection's (webhooks.raw,
    changes.normalized) or a tenant's (changes.internal, records.changed). A key that does
    not start with an id proves nothing: that record is parsed, never silently dropped.
    """
    prefix = (message.key or b"").split(b":", 1)[0]
    if prefix in ours:
        return False
    try:
        uuid.UUID(prefix.decode())
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def _reproduced(message: ConsumerRecord[bytes, bytes]) -> bool:
    return any(k == topics.REPRODUCED_HEADER for k, _ in message.headers or ())


class _Window:
    """The window's accepted events and committed changes."""

    def __init__(self, infos: list[ConnectionInfo], wanted: set[uuid.UUID]) -> None:
        self.infos = {i.id: i for i in infos}
        self.wanted = wanted
        self.wanted_keys = {str(c).encode() for c in wanted}
        self.tenant_keys = {str(i.tenant_id).encode() for i in infos}
        self.events: list[Accepted] = []
        self.records: Counter[uuid.UUID] = Counter()
        self.inbound_start: dict[TopicPartition, int] = {}

    async def read_inbound(self, reader: _Reader, since: datetime | None, until: datetime) -> None:
        for name in SOURCE_TOPICS:
            starts = await reader.offsets_at(name, since, default_end=False)
            ends = await reader.offsets_at(name, until, default_end=True)
            self.inbound_start.update(starts)
            ranges = {tp: (starts[tp], ends[tp]) for tp in starts}
            async for m in reader.scan(ranges):
                if _reproduced(m):
                    continue
                if name == topics.WEBHOOKS_RAW.name:
                    found = [] if _others(m, self.wanted_keys) else self.webhook_events(m)
                else:
                    found = self.change_events(m)
                if found:
                    self.records[found[0].connection_id] += 1
                    self.events.extend(found)

    def webhook_events(self, m: ConsumerRecord[bytes, bytes]) -> list[Accepted]:
        try:
            envelope = WebhookEnvelope.model_validate_json(m.value or b"")
        except ValidationError:
            return []  # not ingest's: nothing names its connection
        info = self.infos.get(envelope.connection_id)
        if info is None or info.id not in self.wanted:
            return []
        base = _accepted(m, info.id, str(envelope.event_id))
        try:
            mapper = info.connector().mapper
            parsed = (
                mapper.parse_webhook(envelope.body, envelope.headers, info.settings)
                if mapper is not None
                else None
            )
        except MappingError:
            parsed = None
        except Exception:  # noqa: BLE001 - a mapper's bug must not stop the audit
            # The processor could not have mapped it either: one event, parked or lost.
            parsed = None
        if parsed is None:
            return [base]  # one event, parked whole (or lost)
        items = [
            _with(base, key=item_key(envelope, i), entity_type=i.entity_type) for i in parsed.items
        ]
        ignored = [_with(base, skipped="ignored_event_type")] * parsed.ignored
        return items + ignored or [_with(base, skipped="no_events")]

    def change_events(self, m: ConsumerRecord[bytes, bytes]) -> list[Accepted]:
        if _others(m, self.tenant_keys):
            return []
        try:
            value = json.loads(m.value or b"")
            connection_id = uuid.UUID(value["connection_id"])
            record_id = str(value["event_id"])
            key = str(value["change"]["event_id"])
        except (ValueError, KeyError, TypeError):
            return []  # not ingest's: nothing names its connection
        if connection_id not in self.wanted:
            return []
        return [_with(_accepted(m, connection_id, record_id), key=key)]

    @staticmethod
    async def read_changes(
        reader: _Reader,
        tenant: uuid.UUID | None,
        since: datetime | None,
        until: datetime,
        *,
        start: dict[TopicPartition, int] | None = None,
    ) -> tuple[list[tuple[Committed, TopicPartition, int]], dict[TopicPartition, int]]:
        """Changes committed in the window, each with the offset of its record, from
        ``start`` (default: ``since``) to the topic's end now; and that end."""
        name = topics.RECORDS_CHANGED.name
        starts = start or await reader.offsets_at(name, since, default_end=False)
        ends = await reader.ends(name)
        ours = {str(tenant).encode()} if tenant is not None else None
        found: list[tuple[Committed, TopicPartition, int]] = []
        async for m in reader.scan({tp: (starts.get(tp, 0), ends[tp]) for tp in ends}):
            if ours is not None and _others(m, ours):
                continue
            change = _committed(m.value)
            if change is None or change.committed_at >= until:
                continue
            if since is not None and change.committed_at < since:
                continue
            found.append((change, TopicPartition(m.topic, m.partition), m.offset))
        return found, ends


def _accepted(m: ConsumerRecord[bytes, bytes], connection_id: uuid.UUID, record: str) -> Accepted:
    return Accepted(
        connection_id=connection_id,
        record_id=record,
        where=f"{m.topic}[{m.partition}]@{m.offset}",
        partition=m.partition,
        offset=m.offset,
        timestamp_ms=m.timestamp,
        topic=m.topic,
    )


def _with(base: Accepted, **changes: Any) -> Accepted:
    return replace(base, **changes)


def _committed(value: bytes | None, *, routed: bool = False) -> Committed | None:
    try:
        v = json.loads(value or b"")
        return Committed(
            change_id=uuid.UUID(v["change_id"]),
            tenant_id=uuid.UUID(v["tenant_id"]),
            entity_type=str(v["entity_type"]),
            entity_id=uuid.UUID(v["entity_id"]),
            version=int(v["version"]),
            origin_connection_id=uuid.UUID(v["origin_connection_id"])
            if v.get("origin_connection_id")
            else None,
            committed_at=datetime.fromisoformat(v["committed_at"]),
            routed=routed,
        )
    except (ValueError, KeyError, TypeError):
        return None  # not the relay's: outbound skips it too


def _routed(
    changes: list[tuple[Committed, TopicPartition, int]], committed: dict[TopicPartition, int]
) -> list[Committed]:
    return [replace(c, routed=offset < committed.get(tp, 0)) for c, tp, offset in changes]


def _unique(changes: Iterable[Committed]) -> list[Committed]:
    """One entry per change id: the relay may publish a change twice (a crash between the
    acknowledgement and the outbox delete); routed if any copy was."""
    found: dict[uuid.UUID, Committed] = {}
    for c in changes:
        seen = found.get(c.change_id)
        if seen is None or (c.routed and not seen.routed):
            found[c.change_id] = c
    return list(found.values())


async def _waiting(
    reader: _Reader,
    kafka: KafkaTarget,
    committed: dict[TopicPartition, int],
    window: _Window,
    since: datetime | None,
) -> tuple[frozenset[str], frozenset[Key]]:
    """Records and normalised changes on the processor's topics that it has not consumed:
    from its committed offset (else from the window's start) to the end."""
    records: set[str] = set()
    keys: set[Key] = set()
    prefixes = window.wanted_keys | window.tenant_keys
    for name in (*SOURCE_TOPICS, topics.CHANGES_NORMALIZED.name):
        ends = await reader.ends(name)
        fallback = (
            window.inbound_start
            if name in SOURCE_TOPICS
            else await reader.offsets_at(name, since, default_end=False)
        )
        ranges = {tp: (committed.get(tp, fallback.get(tp, 0)), end) for tp, end in ends.items()}
        async for m in reader.scan(ranges):
            if _others(m, prefixes):
                continue
            try:
                value = json.loads(m.value or b"")
                records.add(str(value["event_id"]))
                if name == topics.CHANGES_NORMALIZED.name:
                    keys.add((uuid.UUID(value["connection_id"]), str(value["change"]["event_id"])))
            except (ValueError, KeyError, TypeError):
                continue
    return frozenset(records), frozenset(keys)


# -- PostgreSQL -----------------------------------------------------------------------------


def _parked_since(since: datetime | None) -> datetime | None:
    """Dead letters of the window's events and changes were written after they were
    accepted or committed: only those since then are read (dead letters can be many, and
    each payload is parsed). The margin covers clocks of Kafka's producers and PostgreSQL
    that disagree a little."""
    return since - CLOCK_MARGIN if since is not None else None


async def _dead_letters(
    conn: Conn, tenant: uuid.UUID | None, since: datetime | None, *, outbound: bool
) -> list[asyncpg.Record]:
    """The payloads of the window's dead letters not redriven (any tenant's when ``tenant``
    is None): the outbound stage's, or else the inbound stages'."""
    stage = "stage = 'outbound'" if outbound else "stage <> 'outbound'"
    return list(
        await conn.fetch(
            f"""
            SELECT payload FROM dead_letters
             WHERE {stage} AND redriven_at IS NULL
               AND ($1::uuid IS NULL OR tenant_id = $1)
               AND ($2::timestamptz IS NULL OR created_at >= $2)
            """,  # noqa: S608 - one of two constant clauses
            tenant,
            _parked_since(since),
        )
    )


class _InboundRows:
    def __init__(self) -> None:
        self.processed: dict[Key, datetime] = {}
        self.recorded_skips: dict[Key, str] = {}
        self.not_synced: frozenset[tuple[uuid.UUID, str]] = frozenset()
        self.dead_records: frozenset[str] = frozenset()
        self.dead_keys: frozenset[Key] = frozenset()
        self.parked_keys: set[Key] = set()


async def _inbound_facts(
    conn: Conn,
    tenant: uuid.UUID | None,
    since: datetime | None,
    infos: list[ConnectionInfo],
    events: list[Accepted],
) -> _InboundRows:
    rows = _InboundRows()
    keys = sorted({(e.connection_id, e.key) for e in events if e.key is not None})
    for i in range(0, len(keys), LOOKUP_CHUNK):
        chunk = keys[i : i + LOOKUP_CHUNK]
        columns = ([k[0] for k in chunk], [k[1] for k in chunk])
        for r in await conn.fetch(
            """
            SELECT p.connection_id, p.provider_event_id, p.processed_at
              FROM unnest($1::uuid[], $2::text[]) AS w(c, e)
              JOIN processed_events p ON p.connection_id = w.c AND p.provider_event_id = w.e
            """,
            *columns,
        ):
            rows.processed[(r["connection_id"], r["provider_event_id"])] = r["processed_at"]
        for r in await conn.fetch(
            """
            SELECT s.connection_id, s.provider_event_id, s.reason
              FROM unnest($1::uuid[], $2::text[]) AS w(c, e)
              JOIN inbound_skips s ON s.connection_id = w.c AND s.provider_event_id = w.e
            """,
            *columns,
        ):
            rows.recorded_skips[(r["connection_id"], r["provider_event_id"])] = r["reason"]
        # Parked until a record they name is linked (invariant 10): in flight.
        for r in await conn.fetch(
            """
            SELECT p.connection_id, p.dedup_key
              FROM unnest($1::uuid[], $2::text[]) AS w(c, e)
              JOIN waiting_changes p ON p.connection_id = w.c AND p.dedup_key = w.e
            """,
            *columns,
        ):
            rows.parked_keys.add((r["connection_id"], r["dedup_key"]))
    rows.not_synced = frozenset(
        (i.id, entity_type)
        for i in infos
        for entity_type in TABLES
        if i.provider != "internal" and not i.syncs("in", entity_type)
    )
    dead_records: set[str] = set()
    dead_keys: set[Key] = set()
    for r in await _dead_letters(conn, tenant, since, outbound=False):
        try:
            value = json.loads(r["payload"])
            dead_records.add(str(value["event_id"]))
            change = value.get("change")
            if isinstance(change, dict):
                dead_keys.add((uuid.UUID(value["connection_id"]), str(change["event_id"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # bytes that never named an event: nothing of the ledger's
    rows.dead_records = frozenset(dead_records)
    rows.dead_keys = frozenset(dead_keys)
    return rows


async def _outbox(
    conn: Conn, tenant: uuid.UUID | None, since: datetime | None, until: datetime
) -> list[Committed]:
    """Changes committed in the window that the relay has not published yet."""
    rows = await conn.fetch(
        "SELECT payload::text AS payload FROM outbox WHERE $1::uuid IS NULL OR tenant_id = $1",
        tenant,
    )
    found = []
    for r in rows:
        change = _committed(r["payload"].encode())
        if change is None or change.committed_at >= until:
            continue
        if since is None or change.committed_at >= since:
            found.append(change)
    return found


async def _outbound_facts(
    conn: Conn, tenant: uuid.UUID | None, since: datetime | None, changes: list[Committed]
) -> OutboundFacts:
    ids = sorted({c.entity_id for c in changes})
    pushed: dict[Target, int] = {}
    linked: set[Target] = set()
    queued: dict[Target, int] = {}
    deleted: set[uuid.UUID] = set()
    held: dict[Target, datetime] = {}
    # The sync log is read through its (tenant, entity) index.
    tenants = sorted({c.tenant_id for c in changes})
    for i in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[i : i + LOOKUP_CHUNK]
        for r in await conn.fetch(
            """
            SELECT connection_id, entity_type, entity_id, max(created_at) AS at
              FROM sync_log
             WHERE tenant_id = ANY($2::uuid[]) AND entity_id = ANY($1::uuid[])
               AND direction = 'out' AND outcome = 'held'
             GROUP BY connection_id, entity_type, entity_id
            """,
            chunk,
            tenants,
        ):
            held[(r["connection_id"], r["entity_type"], r["entity_id"])] = r["at"]
        for r in await conn.fetch(
            """
            SELECT connection_id, entity_type, entity_id, last_pushed_version
              FROM entity_links WHERE entity_id = ANY($1::uuid[])
            """,
            chunk,
        ):
            key = (r["connection_id"], r["entity_type"], r["entity_id"])
            linked.add(key)
            if r["last_pushed_version"] is not None:
                pushed[key] = r["last_pushed_version"]
        for r in await conn.fetch(
            """
            SELECT connection_id, entity_type, entity_id, version
              FROM push_jobs WHERE entity_id = ANY($1::uuid[])
            """,
            chunk,
        ):
            queued[(r["connection_id"], r["entity_type"], r["entity_id"])] = r["version"]
        for table in TABLES.values():
            deleted.update(
                r["id"]
                for r in await conn.fetch(
                    f"SELECT id FROM {table} WHERE id = ANY($1::uuid[])"  # noqa: S608 - fixed map
                    " AND deleted_at IS NOT NULL",
                    chunk,
                )
            )
    dead: dict[Target, int] = {}
    for r in await _dead_letters(conn, tenant, since, outbound=True):
        try:
            v = json.loads(r["payload"])
            key = (uuid.UUID(v["connection_id"]), str(v["entity_type"]), uuid.UUID(v["entity_id"]))
            dead[key] = max(dead.get(key, 0), int(v["version"]))
        except (ValueError, KeyError, TypeError):
            continue
    return OutboundFacts(
        pushed=pushed,
        queued=queued,
        dead=dead,
        deleted=frozenset(deleted),
        linked=frozenset(linked),
        held=held,
    )
