"""Changes that wait for a record they name (DESIGN invariant 10): the waiting_changes
table (infra/migrations/0010) and the per-batch bookkeeping of who waits behind whom.

A change whose reference is not linked yet is decided WAITING (decide's rule 0). The
apply step retries it in a further pass of its batch when that batch linked the record;
otherwise it is parked here in the batch's own transaction. The sweep
(:mod:`services.processor.sweep`) releases it once the record is linked, and turns it
into a ``missing_reference`` dead letter once it waited too long.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from crmsync.common.db import Conn
from services.processor.apply import Applied
from services.processor.deadletters import Source
from services.processor.decide import InboundChange, Outcome, Reference

RecordKey = tuple[uuid.UUID, str, str]  # connection, entity type, external id

# What a change of an inbound-paused connection waits for: the pause's end, not a record.
# Released when no inbound pause of its connection or tenant is in force; never expires
# (the pause bounds it, and an operator ends it).
PAUSED = "paused"


def pause_reference(connection_id: uuid.UUID) -> Reference:
    return Reference(PAUSED, "connection", str(connection_id))


@dataclass(frozen=True, slots=True)
class Parked:
    """A released change's row: parked again, it keeps its place and its deadline."""

    id: int
    parked_at: datetime


class Waits:
    """Which records have a change waiting, and for what: those parked before the batch,
    and those whose change waits in this pass. A later change of such a record waits
    behind it (decide's ``behind``), so a record's changes apply in order."""

    def __init__(self, parked: Mapping[RecordKey, Reference]) -> None:
        self._parked = dict(parked)
        self._behind = dict(parked)

    def next_pass(self) -> Waits:
        """For a further pass: only the parked ones hold; this pass's waits are retried."""
        return Waits(self._parked)

    def behind(self, change: InboundChange) -> Reference | None:
        return self._behind.get(change.record_key)

    def note(self, change: InboundChange, result: Applied) -> Applied:
        if result.outcome is Outcome.WAITING and result.waits_for is not None:
            self._behind.setdefault(change.record_key, result.waits_for)
        return result


async def parked_for(
    conn: Conn, changes: Sequence[InboundChange], *, anything_waits: bool | None = None
) -> dict[RecordKey, Reference]:
    """For each of these changes' records with a change parked, what the first waits for:
    one probe of waiting_changes_record_idx per record, in one statement, when anything
    waits at all. ``anything_waits``: whether any change waits, if the caller has asked
    already in this transaction (None: asked here)."""
    # Nearly always nothing waits: a probe of the empty table is a tenth of the keyed
    # lookup (measured: 0.09 ms against 1.3 ms for a batch of 500 changes).
    if anything_waits is None and changes:
        anything_waits = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM waiting_changes)")
    if not changes or not anything_waits:
        return {}
    keys = list({c.record_key for c in changes})
    rows = await conn.fetch(
        """
        SELECT DISTINCT ON (w.connection_id, w.entity_type, w.external_id)
               w.connection_id, w.entity_type, w.external_id,
               w.ref_field, w.ref_type, w.ref_external_id
          FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(c, t, x)
          JOIN waiting_changes w
            ON w.connection_id = k.c AND w.entity_type = k.t AND w.external_id = k.x
         ORDER BY w.connection_id, w.entity_type, w.external_id, w.id
        """,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
    )
    return {
        (r["connection_id"], r["entity_type"], r["external_id"]): Reference(
            r["ref_field"], r["ref_type"], r["ref_external_id"]
        )
        for r in rows
    }


@dataclass(frozen=True, slots=True)
class ToPark:
    change: InboundChange
    source: Source
    waits_for: Reference
    parked: Parked | None  # set when it was parked before: released and waiting again


_COLUMNS = """tenant_id, connection_id, dedup_key, entity_type, external_id, ref_field,
              ref_type, ref_external_id, topic, kafka_partition, kafka_offset, record_key,
              payload"""
_ARRAYS = """$1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::int[], $11::bigint[], $12::bytea[], $13::bytea[]"""
_NAMES = "t, c, d, e, x, rf, rt, rx, tp, pa, o, k, v"


def _columns(items: Sequence[ToPark]) -> list[list[object]]:
    return [
        [p.change.tenant_id for p in items],
        [p.change.connection_id for p in items],
        [p.change.dedup_key for p in items],
        [p.change.entity_type for p in items],
        [p.change.external_id for p in items],
        [p.waits_for.field_name for p in items],
        [p.waits_for.entity_type for p in items],
        [p.waits_for.external_id for p in items],
        [p.source.topic for p in items],
        [p.source.partition for p in items],
        [p.source.offset for p in items],
        [p.source.key for p in items],
        [p.source.value for p in items],
    ]


async def park(conn: Conn, items: Sequence[ToPark]) -> None:
    """Park waiting changes in the caller's transaction, in the batch's order (their ids
    keep it). A released change keeps its id and its parking time: its place before later
    changes of its record, and its deadline. A redelivery of a parked one is dropped."""
    again = [p for p in items if p.parked is not None]
    new = [p for p in items if p.parked is None]
    if again:
        await conn.execute(
            f"""
            INSERT INTO waiting_changes (id, parked_at, {_COLUMNS})
            SELECT i, p, {_NAMES}
              FROM unnest($14::bigint[], $15::timestamptz[], {_ARRAYS}) AS u(i, p, {_NAMES})
            ON CONFLICT (connection_id, dedup_key) DO NOTHING
            """,  # noqa: S608 - our constants
            *_columns(again),
            [p.parked.id for p in again if p.parked is not None],
            [p.parked.parked_at for p in again if p.parked is not None],
        )
    if new:
        await conn.execute(
            f"""
            INSERT INTO waiting_changes ({_COLUMNS})
            SELECT {_NAMES}
              FROM unnest({_ARRAYS}) WITH ORDINALITY AS u({_NAMES}, n)
             ORDER BY n
            ON CONFLICT (connection_id, dedup_key) DO NOTHING
            """,  # noqa: S608 - our constants
            *_columns(new),
        )


@dataclass(frozen=True, slots=True)
class WaitingRow:
    source: Source
    parked: Parked
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    dedup_key: str
    entity_type: str
    external_id: str
    waits_for: Reference


def _row(r: asyncpg.Record) -> WaitingRow:
    return WaitingRow(
        Source(r["topic"], r["kafka_partition"], r["kafka_offset"], r["record_key"], r["payload"]),
        Parked(r["id"], r["parked_at"]),
        r["tenant_id"],
        r["connection_id"],
        r["dedup_key"],
        r["entity_type"],
        r["external_id"],
        Reference(r["ref_field"], r["ref_type"], r["ref_external_id"]),
    )


async def take_ready(conn: Conn, records: int) -> list[WaitingRow]:
    """Take (delete, in the caller's transaction) every parked change of up to ``records``
    records that have one whose reference is linked now, in parking order: a record's
    changes are released together, so the apply step keeps their order. Rows another
    sweep holds are skipped. Whatever still waits is parked again by the apply step."""
    rows = await conn.fetch(
        """
        WITH ready AS (
            SELECT DISTINCT w.connection_id, w.entity_type, w.external_id
              FROM waiting_changes w
             WHERE CASE WHEN w.ref_field = 'paused'
                        THEN NOT EXISTS (
                             SELECT 1 FROM pauses p
                              WHERE p.tenant_id = w.tenant_id AND p.inbound
                                AND (p.connection_id IS NULL OR p.connection_id = w.connection_id)
                                AND p.starts_at <= now()
                                AND (p.ends_at IS NULL OR p.ends_at > now()))
                        ELSE EXISTS (SELECT 1 FROM entity_links l
                                      WHERE l.connection_id = w.connection_id
                                        AND l.entity_type = w.ref_type
                                        AND l.external_id = w.ref_external_id) END
             LIMIT $1
        ), taken AS (
            SELECT w.id FROM waiting_changes w
              JOIN ready r ON r.connection_id = w.connection_id
                          AND r.entity_type = w.entity_type AND r.external_id = w.external_id
               FOR UPDATE OF w SKIP LOCKED
        )
        DELETE FROM waiting_changes w USING taken WHERE w.id = taken.id
        RETURNING w.*
        """,
        records,
    )
    return sorted((_row(r) for r in rows), key=lambda w: w.parked.id)


async def take_expired(conn: Conn, wait_seconds: float, limit: int) -> list[WaitingRow]:
    """Take the changes parked longer than ``wait_seconds``, oldest first, through the
    parked_at index."""
    rows = await conn.fetch(
        """
        WITH old AS (
            SELECT id FROM waiting_changes
             WHERE parked_at < now() - make_interval(secs => $1) AND ref_field <> 'paused'
             ORDER BY parked_at LIMIT $2
               FOR UPDATE SKIP LOCKED
        )
        DELETE FROM waiting_changes w USING old WHERE w.id = old.id
        RETURNING w.*
        """,
        wait_seconds,
        limit,
    )
    return sorted((_row(r) for r in rows), key=lambda w: w.parked.id)


async def count_waiting(conn: Conn | asyncpg.Pool) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM waiting_changes"))
