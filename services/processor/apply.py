"""Apply normalised changes to the canonical records, change by change, with SQL.

Per change, in order: drop it if this connection's event id was processed already; refuse
ids its tenant does not have; find the record through the connection's link, or on first
contact match an existing record (customer by email, invoice by number, payment by
reference), or the record being pushed to that connection it is the echo of
(PUSHED_MATCH_ON: a job by title, a customer without an email by name, ...);
then :func:`services.processor.decide.decide` says what the change does, and this module
writes it. The same rules serve the set-based path (batch.py); this one is the
reference it is tested against, and where a batch Postgres rejects is replayed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import TypeAdapter

from connectors.spec import REFERENCE_FIELDS
from crmsync.common.canonical import TABLES, InvalidRecordError
from crmsync.common.canonical import canonical_values as shared_canonical_values
from crmsync.common.db import Conn
from crmsync.common.pushes import Push, not_parked, queue_pushes
from schemas.errors import DeadLetter, RetryLater
from schemas.records import CanonicalRecord
from services.processor.amounts import Move, derive, invoices_moved
from services.processor.decide import (
    Decision,
    InboundChange,
    Link,
    LinkWrite,
    OutboxEntry,
    Outcome,
    Pushed,
    Record,
    Reference,
    Rule,
    Write,
    decide,
)
from services.processor.merge import Conflict, FieldMeta, Policy, RecordState

# First-contact matching: the canonical field and the generated column it is indexed as.
MATCH_ON: dict[str, tuple[str, str]] = {
    "customer": ("email", "email_normalized"),
    "invoice": ("number", "number"),
    "payment": ("reference", "reference"),
}
# The echo of our own create (the target's webhook of a record a push just made there)
# can reach the processor before the push's bookkeeping links it, when outbound is slow
# to run (seen at load 7 in the catalogue convergence case, seed 13: a second canonical
# job, and that push failing on entity_links' key for ever). A kind's first-contact key
# finds it, when it has one: a job never does (two jobs may share a title), nor does a
# customer without an email, an invoice without a number or a payment without a
# reference (nor one the target numbered itself: Ascora, Xero and QuickBooks number an
# invoice sent without one, so the echo's number is not ours). So an unlinked change the
# first-contact key did not match is matched on these fields, only to a record queued
# for a push to that very connection and not linked there: the first field must be
# present, the others (references, as the echo's links resolved them) equal, absent
# included. Such a record whose own first-contact key is set matches only an echo
# without one: two different keys are two different records.
PUSHED_MATCH_ON: dict[str, tuple[str, ...]] = {
    "job": ("title",),
    "customer": ("name",),
    "invoice": ("total", "customer_id"),
    "payment": ("amount", "invoice_id"),
}

PushedKey = tuple[str | None, ...]


def match_key(entity_type: str, values: Mapping[str, Any]) -> str | None:
    """The first-contact key of a record's values (MATCH_ON), normalised, or None."""
    if entity_type not in MATCH_ON:
        return None
    raw = values.get(MATCH_ON[entity_type][0])
    if not raw:
        return None
    return str(raw).strip().lower() if entity_type == "customer" else str(raw)


def pushed_key(entity_type: str, values: Mapping[str, Any]) -> PushedKey | None:
    """The values an echo of our create is matched on (PUSHED_MATCH_ON) as the text
    ``data->>field`` reads, or None when the first is absent."""
    key = tuple(
        None if values.get(f) is None else str(values[f]) for f in PUSHED_MATCH_ON[entity_type]
    )
    return key if key[0] else None


def pushed_lock(tenant_id: uuid.UUID, entity_type: str, key: PushedKey) -> str:
    """The advisory lock a match on ``key`` takes (both paths): one record, one echo."""
    return f"pushed:{tenant_id}:{entity_type}:" + "\x1f".join(k or "" for k in key)


def _pushed_sql(kind: str) -> str:
    """For each ($1 index, $2 tenant, $3 connection, then one text per PUSHED_MATCH_ON
    field), the records of ``kind`` so valued queued for a push to that connection and
    not linked there, oldest first, with their first-contact key: what an unlinked change
    of that connection may be the echo of. The push job's row lives until the push's
    bookkeeping has linked the record. The connection's queued pushes first (few: the
    queue drains within seconds, and push_jobs' key leads with the connection), then each
    record by id: a title or a name has no index, and a tenant may hold many records."""
    fields = PUSHED_MATCH_ON[kind]
    names = [f"f{i}" for i in range(len(fields))]
    arrays = ", ".join(f"${i + 4}::text[]" for i in range(len(fields)))
    equal = " AND ".join(
        f"r.data->>'{f}' IS NOT DISTINCT FROM k.{n}" for f, n in zip(fields, names, strict=True)
    )
    own = f"r.{MATCH_ON[kind][1]}" if kind in MATCH_ON else "NULL::text"
    return f"""
        SELECT k.n, r.id, {own} AS own_key
          FROM unnest($1::int[], $2::uuid[], $3::uuid[], {arrays})
               AS k(n, t, c, {", ".join(names)})
          JOIN push_jobs p ON p.connection_id = k.c AND p.entity_type = '{kind}'
          JOIN {TABLES[kind]} r ON r.id = p.entity_id AND r.tenant_id = k.t
         WHERE {equal} AND r.deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM entity_links l
                            WHERE l.connection_id = k.c AND l.entity_type = '{kind}'
                              AND l.entity_id = r.id)
         ORDER BY k.n, r.created_at, r.id
    """  # noqa: S608 - table and fields come from the fixed maps


PUSHED_SQL = {kind: _pushed_sql(kind) for kind in PUSHED_MATCH_ON}


class QueuedPush(NamedTuple):
    """A record queued for a push that an unlinked change may be the echo of, with its
    first-contact key (None: it has none)."""

    entity_id: uuid.UUID
    own_key: str | None


async def pushed_records(
    conn: Conn, kind: str, wanted: Sequence[tuple[uuid.UUID, uuid.UUID, PushedKey]]
) -> list[list[QueuedPush]]:
    """PUSHED_SQL for each (tenant, connection, key) of ``wanted``, in one statement."""
    found: list[list[QueuedPush]] = [[] for _ in wanted]
    if not wanted:
        return found
    columns = list(zip(*(key for _, _, key in wanted), strict=True))
    for r in await conn.fetch(
        PUSHED_SQL[kind],
        list(range(len(wanted))),
        [t for t, _, _ in wanted],
        [c for _, c, _ in wanted],
        *(list(column) for column in columns),
    ):
        found[r["n"]].append(QueuedPush(r["id"], r["own_key"]))
    return found


async def pushes_queued(
    conn: Conn, pairs: set[tuple[uuid.UUID, str]]
) -> set[tuple[uuid.UUID, str]]:
    """Which (connection, entity type) pairs have a push queued: only their changes can be
    the echo of one (PUSHED_MATCH_ON). One index probe each (push_jobs' key leads with
    them); a batch of new records from a connection nothing is pushed to stops here."""
    if not pairs:
        return set()
    rows = await conn.fetch(
        """
        SELECT w.c, w.t FROM unnest($1::uuid[], $2::text[]) AS w(c, t)
         WHERE EXISTS (SELECT 1 FROM push_jobs p
                        WHERE p.connection_id = w.c AND p.entity_type = w.t)
        """,
        [c for c, _ in pairs],
        [t for _, t in pairs],
    )
    return {(r["c"], r["t"]) for r in rows}


def echoes(own_key: str | None, change_key: str | None) -> bool:
    """Whether a pushed record with first-contact key ``own_key`` may be echoed by a change
    with ``change_key`` (PUSHED_MATCH_ON): not when both have one (equal ones matched on
    first contact already; different ones are different records)."""
    return own_key is None or change_key is None


class InvalidChangeError(DeadLetter):
    """The change cannot be applied as sent; it becomes a dead letter with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ForeignReferenceError(InvalidChangeError):
    """The change names a record or connection its tenant does not have (invariant 11).

    Another tenant's id and an id of nothing read the same: a dead letter must not tell a
    tenant which ids exist elsewhere. Fixed by correcting the publisher and redriving."""

    REASON = "foreign_reference"

    def __init__(self, detail: str) -> None:
        super().__init__(self.REASON, detail)


@dataclass(frozen=True)
class Applied:
    outcome: Outcome
    entity_id: uuid.UUID | None = None
    version: int | None = None
    change_id: uuid.UUID | None = None
    waits_for: Reference | None = None  # WAITING: the record it waits for
    # The invoices whose amount due the change may have moved (amounts.invoices_moved).
    invoices: tuple[uuid.UUID, ...] = ()
    # The rule of decide()'s table that decided (finer than the outcome: an echo of our
    # last push, rule 5, or of an earlier one, rule 5a); None where none ran (a duplicate,
    # an erased person, a paused connection). The sync log and a metric count it.
    rule: Rule | None = None


def canonical_values(entity_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate against the canonical model; keep only the fields that were sent."""
    try:
        return shared_canonical_values(entity_type, data)
    except InvalidRecordError as exc:
        raise InvalidChangeError(exc.reason, exc.detail) from None


class Named(NamedTuple):
    """An id a change names that must be its tenant's: ``kind`` is an entity type or
    ``connection``; ``field`` is where the change names it."""

    field: str
    kind: str
    id: uuid.UUID

    def not_owned(self) -> ForeignReferenceError:
        return ForeignReferenceError(
            f"{self.field} {self.id}: no {self.kind} of this tenant; have the publisher send"
            " one of its tenant's ids, then redrive"
        )


def named_ids(change: InboundChange, values: dict[str, Any]) -> list[Named]:
    """Every id the change names by itself: its connection (set by ingest from the key or
    the URL, checked all the same) and each canonical reference in its validated values,
    whether the publisher wrote it or resolve_refs did. A change cannot name its own
    record's id: canonical models have no ``id`` field, and a record is found through its
    connection's link, which :func:`apply_change` checks in turn."""
    named = [Named("connection_id", "connection", change.connection_id)]
    for field_name, entity_type in REFERENCE_FIELDS.items():
        raw = values.get(field_name)
        if raw is not None:
            named.append(Named(field_name, entity_type, uuid.UUID(str(raw))))
    return named


def _owned_sql() -> str:
    """Which of the (tenant, kind, id) triples exist in that tenant: one statement for a
    whole batch, each a primary-key probe."""
    cases = "".join(
        f"""
                 WHEN '{kind}' THEN EXISTS (SELECT 1 FROM {table} r
                                             WHERE r.id = w.i AND r.tenant_id = w.t)"""  # noqa: S608 - our constants
        for kind, table in {**TABLES, "connection": "connections"}.items()
    )
    return f"""
        SELECT w.t, w.k, w.i FROM unnest($1::uuid[], $2::text[], $3::uuid[]) AS w(t, k, i)
         WHERE CASE w.k{cases}
               END
    """  # noqa: S608 - our constants


_OWNED_SQL = _owned_sql()


async def foreign_references(
    conn: Conn,
    changes: Sequence[tuple[InboundChange, dict[str, Any]]],
    *,
    connections: Collection[tuple[uuid.UUID, uuid.UUID]] = (),
) -> list[ForeignReferenceError | None]:
    """For each (change, its canonical values), the first id it names that its tenant does
    not have, or None: in one statement, before anything of the changes is written.
    ``connections``: (tenant, connection) pairs this transaction has found so already
    (the processor's first statement of a batch): not asked again, so a batch whose
    changes name nothing else asks nothing (bench/README.md, "Ninth round")."""
    named = [named_ids(c, v) for c, v in changes]
    pairs = list(zip(changes, named, strict=True))
    owned = {(t, "connection", c) for t, c in connections}
    wanted = {(c.tenant_id, n.kind, n.id) for (c, _), ns in pairs for n in ns} - owned
    if wanted:
        rows = await conn.fetch(_OWNED_SQL, *(list(col) for col in zip(*wanted, strict=True)))
        owned.update((r["t"], r["k"], r["i"]) for r in rows)
    return [
        next((n.not_owned() for n in ns if (c.tenant_id, n.kind, n.id) not in owned), None)
        for (c, _), ns in pairs
    ]


def foreign_link(change: InboundChange, entity_id: uuid.UUID) -> ForeignReferenceError:
    """The connection's link for this record names a record its tenant does not have (links
    the pusher wrote before issue 15 was fixed): applying through it would change or delete
    another tenant's record."""
    return ForeignReferenceError(
        f"the link of connection {change.connection_id} for {change.entity_type}"
        f" {change.external_id} names {entity_id}: no {change.entity_type} of this tenant;"
        " delete that link, then redrive"
    )


def policy_from(settings: dict[str, Any], entity_type: str) -> Policy:
    """The connection's conflict policy for an entity type (settings["conflict_policy"])."""
    policies = settings.get("conflict_policy") or {}
    chosen = policies.get(entity_type) or policies.get("default") or {}
    return Policy(
        kind=chosen.get("kind", "newest_wins"),
        priority=tuple(str(c) for c in chosen.get("priority", ())),
    )


def meta_from_json(raw: dict[str, Any]) -> dict[str, FieldMeta]:
    return {
        name: FieldMeta(datetime.fromisoformat(m["ts"]), m["source"]) for name, m in raw.items()
    }


def meta_to_json(meta: dict[str, FieldMeta]) -> dict[str, Any]:
    return {name: {"ts": m.ts.isoformat(), "source": m.source} for name, m in meta.items()}


async def forget_processed(conn: Conn, changes: Sequence[InboundChange]) -> None:
    """Take back the dedup rows this transaction wrote for changes that wait: a waiting
    change is not processed yet, and its release, a redelivery or a redrive of its dead
    letter must find it fresh (the ledger counts it in flight meanwhile)."""
    if not changes:
        return
    await conn.execute(
        """
        DELETE FROM processed_events p
         USING unnest($1::uuid[], $2::text[]) AS w(c, e)
         WHERE p.connection_id = w.c AND p.provider_event_id = w.e
        """,
        [c.connection_id for c in changes],
        [c.dedup_key for c in changes],
    )


async def _already_processed(conn: Conn, change: InboundChange) -> bool:
    inserted = await conn.fetchval(
        """
        INSERT INTO processed_events (connection_id, provider_event_id) VALUES ($1, $2)
        ON CONFLICT DO NOTHING RETURNING true
        """,
        change.connection_id,
        change.dedup_key,
    )
    return inserted is None


async def _match(conn: Conn, change: InboundChange, values: dict[str, Any]) -> uuid.UUID | None:
    """An existing record this connection's new record is the same thing as, if any: on
    first contact (MATCH_ON), else the record being pushed there it echoes
    (PUSHED_MATCH_ON)."""
    key = match_key(change.entity_type, values)
    echo = pushed_key(change.entity_type, values)
    # Two connections may introduce the same customer at the same moment from different
    # partitions: serialise first contact per match key so only one record is created
    # (and a pushed record's match per its values, so only one echo takes it). Sorted, in
    # one statement: the batch path takes the same locks.
    locks = [f"match:{change.tenant_id}:{change.entity_type}:{key}"] if key else []
    if echo is not None:
        locks.append(pushed_lock(change.tenant_id, change.entity_type, echo))
    if locks:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(n, 0)) FROM unnest($1::text[]) AS n",
            sorted(locks),
        )
    if key:
        table = TABLES[change.entity_type]
        column = MATCH_ON[change.entity_type][1]
        found: uuid.UUID | None = await conn.fetchval(
            f"""
            SELECT r.id FROM {table} r
             WHERE r.tenant_id = $1 AND r.{column} = $2 AND r.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM entity_links l
                                WHERE l.connection_id = $3 AND l.entity_type = $4
                                  AND l.entity_id = r.id)
             ORDER BY r.created_at LIMIT 1
            """,  # noqa: S608 - table and column come from the fixed maps above
            change.tenant_id,
            key,
            change.connection_id,
            change.entity_type,
        )
        if found is not None:
            return found
    if echo is None:
        return None
    [pushing] = await pushed_records(
        conn, change.entity_type, [(change.tenant_id, change.connection_id, echo)]
    )
    return next((p.entity_id for p in pushing if echoes(p.own_key, key)), None)


# Serialises the payload's UUIDs and datetimes natively (pydantic-core), unlike json.dumps.
_PAYLOAD_JSON = TypeAdapter(dict[str, Any])


def outbox_payload(
    change: InboundChange,
    entity_id: uuid.UUID,
    version: int,
    state: Mapping[str, Any],
    *,
    deleted: bool,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    state_text: str | None = None,
) -> tuple[uuid.UUID, str]:
    """A new change id and the ``records.changed`` value for this version of a record: a
    :class:`CanonicalRecord` as the JSON text the outbox stores and the relay publishes.

    Written from a dict: every field is ours and ``state`` holds canonical values already.
    Validating the model and dumping it through Python dicts was a tenth of the processor's
    CPU per event in the bulk profile (py-spy on `bench/run --only processor`); even
    ``model_construct`` costs twice this. tests/unit/test_processor_encoding.py holds the
    text to the model. ``state_text``: ``state`` as JSON already (the batch has it).
    """
    return record_payload(
        change.tenant_id,
        change.entity_type,
        entity_id,
        version,
        state,
        origin=change.connection_id,
        deleted=deleted,
        new_id=new_id,
        state_text=state_text,
    )


def record_payload(
    tenant_id: uuid.UUID,
    entity_type: str,
    entity_id: uuid.UUID,
    version: int,
    state: Mapping[str, Any],
    *,
    origin: uuid.UUID | None,
    deleted: bool = False,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    state_text: str | None = None,
) -> tuple[uuid.UUID, str]:
    """:func:`outbox_payload` for a change that no one change made (``origin``: the
    connection it is not pushed to, if any). With ``state_text`` (``state`` as JSON, which
    the set-based path has already) the state is not encoded again: it is put into the
    envelope pydantic wrote, whose last byte is its closing brace. The envelope stays
    pydantic's: UUIDs formatted in Python (five ``str(uuid)`` calls) cost more than the
    whole dump (bench/README.md, "Eighth round")."""
    change_id = new_id()
    payload: dict[str, Any] = {
        "event_id": new_id(),
        "schema_version": CanonicalRecord.SCHEMA_VERSION,
        "tenant_id": tenant_id,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "version": version,
        "deleted": deleted,
        "origin_connection_id": origin,
        "change_id": change_id,
        "committed_at": datetime.now(UTC),
    }
    if state_text is None:
        payload["state"] = dict(state)
        return change_id, _PAYLOAD_JSON.dump_json(payload).decode()
    envelope = _PAYLOAD_JSON.dump_json(payload)
    return change_id, f'{envelope[:-1].decode()},"state":{state_text}}}'


def outbox_row(
    change: InboundChange,
    entity_id: uuid.UUID,
    entry: OutboxEntry,
    *,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    state_text: str | None = None,
) -> tuple[Any, ...]:
    """The outbox row for a decided entry, as both paths insert it: change_id, tenant_id,
    entity_type, entity_id, version, origin_connection_id, payload (``state_text``: the
    entry's values as JSON, if the caller has them)."""
    change_id, payload = outbox_payload(
        change,
        entity_id,
        entry.version,
        entry.values,
        deleted=entry.deleted,
        new_id=new_id,
        state_text=state_text,
    )
    return (
        change_id,
        change.tenant_id,
        change.entity_type,
        entity_id,
        entry.version,
        change.connection_id,
        payload,
    )


def conflict_row(change: InboundChange, entity_id: uuid.UUID, c: Conflict) -> tuple[Any, ...]:
    """The conflicts row for a parked field, as both paths insert it: tenant_id,
    entity_type, entity_id, field, current_value, incoming_value, incoming_connection_id,
    incoming_source_ts."""
    return (
        change.tenant_id,
        change.entity_type,
        entity_id,
        c.field,
        c.current,
        c.incoming,
        change.connection_id,
        c.incoming_ts,
    )


async def _record(
    conn: Conn, change: InboundChange, table: str, entity_id: uuid.UUID
) -> Record | None:
    """The record, locked, if the change's tenant has it."""
    row = await conn.fetchrow(
        f"""
        SELECT data, field_meta, version, deleted_at FROM {table}
         WHERE id = $1 AND tenant_id = $2 FOR UPDATE
        """,  # noqa: S608 - the table name comes from TABLES
        entity_id,
        change.tenant_id,
    )
    if row is None:
        return None
    state = RecordState(row["data"], meta_from_json(row["field_meta"]))
    return Record(entity_id, state, row["version"], row["deleted_at"] is not None)


def link_pushes(stored: Sequence[Mapping[str, Any]]) -> tuple[Pushed, ...]:
    """A link's ``pushes`` column (migration 0022: the hash and updated-at of each of our
    last few writes, oldest first) as decide() takes it."""
    return tuple(
        Pushed(w["hash"], None if w["at"] is None else datetime.fromisoformat(w["at"]))
        for w in stored
    )


async def apply_change(
    conn: Conn, change: InboundChange, policy: Policy, *, behind: Reference | None = None
) -> Applied:
    """Apply one change inside the caller's transaction (``behind``: what an earlier change
    of its record waits for, if one does)."""
    values = canonical_values(change.entity_type, change.data) if change.op == "upsert" else {}
    if await _already_processed(conn, change):
        return Applied(Outcome.DUPLICATE)
    (foreign,) = await foreign_references(conn, [(change, values)])
    if foreign is not None:
        raise foreign
    table = TABLES[change.entity_type]
    row = await conn.fetchrow(
        """
        SELECT entity_id, last_seen_snapshot, last_pushed_hash, last_pushed_version,
               remote_updated_at, pushed_updated_at, pushes, remote_version
          FROM entity_links
         WHERE connection_id = $1 AND entity_type = $2 AND external_id = $3
           FOR UPDATE
        """,
        change.connection_id,
        change.entity_type,
        change.external_id,
    )
    link = record = None
    if row is not None:
        link = Link(
            row["entity_id"],
            row["last_seen_snapshot"],
            row["last_pushed_hash"],
            row["last_pushed_version"],
            row["remote_updated_at"],
            row["pushed_updated_at"],
            link_pushes(row["pushes"]),
            row["remote_version"],
        )
        record = await _record(conn, change, table, link.entity_id)
        if record is None:
            raise foreign_link(change, link.entity_id)
    elif change.op == "upsert":
        matched = await _match(conn, change, values)
        if matched is not None:
            record = await _record(conn, change, table, matched)

    decision = decide(change, values, link, record, policy, behind=behind)
    if decision.outcome is Outcome.WAITING:
        await forget_processed(conn, [change])
        return Applied(decision.outcome, waits_for=decision.waits_for, rule=decision.rule)
    entity_id = await _write(conn, change, table, decision)
    if entity_id is None:  # a delete of nothing this connection told us of
        return Applied(decision.outcome, rule=decision.rule)
    change_id = None
    if decision.outbox is not None:
        outbox = outbox_row(change, entity_id, decision.outbox)
        await conn.execute(
            """
            INSERT INTO outbox (change_id, tenant_id, entity_type, entity_id, version,
                                origin_connection_id, payload)
            VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)
            """,
            *outbox,
        )
        change_id = outbox[0]
    for conflict in decision.conflicts:
        await conn.execute(
            """
            INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                                   incoming_value, incoming_connection_id, incoming_source_ts)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            """,
            *conflict_row(change, entity_id, conflict),
        )
    if decision.link is not None:
        await _save_link(conn, change, entity_id, decision.link)
    if decision.push_again is not None:
        # Our push can land after a concurrent edit made in that same system: the system
        # then holds our (older) values, and its own edit, applied here meanwhile, was not
        # pushed back to it, because it came from there. Its echo tells us: queue ours.
        push = Push(
            change.tenant_id,
            change.connection_id,
            change.entity_type,
            entity_id,
            decision.push_again,
        )
        # Unless it refused that version already (a parked dead letter): see not_parked.
        await queue_pushes(conn, await not_parked(conn, [push]), due_now=True)
    return Applied(
        decision.outcome,
        entity_id,
        decision.version,
        change_id,
        invoices=invoices_moved(change.entity_type, record, decision),
        rule=decision.rule,
    )


async def _write(
    conn: Conn, change: InboundChange, table: str, decision: Decision
) -> uuid.UUID | None:
    """Write the record's row as decided; the record's id (a new one for a create)."""
    write, state = decision.write, decision.state
    if write is None or state is None:
        return decision.entity_id
    meta = meta_to_json(dict(state.meta))
    if write is Write.CREATE:
        new_id: uuid.UUID = await conn.fetchval(
            f"INSERT INTO {table} (tenant_id, data, field_meta) VALUES ($1, $2, $3) RETURNING id",  # noqa: S608
            change.tenant_id,
            dict(state.values),
            meta,
        )
        return new_id
    if write is Write.UPDATE:
        await conn.execute(
            f"""
            UPDATE {table} SET data = $2, field_meta = $3, version = $4, updated_at = now()
             WHERE id = $1 AND tenant_id = $5
            """,  # noqa: S608
            decision.entity_id,
            dict(state.values),
            meta,
            decision.version,
            change.tenant_id,
        )
    elif write is Write.PROVENANCE:
        await conn.execute(
            f"UPDATE {table} SET field_meta = $2 WHERE id = $1 AND tenant_id = $3",  # noqa: S608
            decision.entity_id,
            meta,
            change.tenant_id,
        )
    else:
        await conn.execute(
            f"""
            UPDATE {table} SET deleted_at = now(), version = $3, updated_at = now()
             WHERE id = $1 AND tenant_id = $2
            """,  # noqa: S608
            decision.entity_id,
            change.tenant_id,
            decision.version,
        )
    return decision.entity_id


async def _save_link(
    conn: Conn, change: InboundChange, entity_id: uuid.UUID, seen: LinkWrite
) -> None:
    # remote_version: the change's, when decide() stores one (a provider whose versions are
    # ordered, not below the link's), else the link's own.
    if seen.snapshot is None:  # a delete: only the newest timestamp (and version) heard move
        await conn.execute(
            """
            UPDATE entity_links SET remote_updated_at = $4,
                                    remote_version = coalesce($5, remote_version),
                                    updated_at = now()
             WHERE connection_id = $1 AND entity_type = $2 AND external_id = $3
            """,
            change.connection_id,
            change.entity_type,
            change.external_id,
            seen.remote_updated_at,
            seen.remote_version,
        )
        return
    saved = await conn.fetchval(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id, external_id,
                                  last_seen_hash, last_seen_snapshot, remote_updated_at,
                                  remote_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT (connection_id, entity_type, external_id) DO UPDATE
           SET last_seen_hash = EXCLUDED.last_seen_hash,
               last_seen_snapshot = EXCLUDED.last_seen_snapshot,
               remote_updated_at = EXCLUDED.remote_updated_at,
               remote_version = coalesce(EXCLUDED.remote_version, entity_links.remote_version),
               updated_at = now()
         WHERE entity_links.entity_id = EXCLUDED.entity_id
        RETURNING true
        """,
        change.tenant_id,
        change.connection_id,
        change.entity_type,
        entity_id,
        change.external_id,
        seen.seen_hash,
        dict(seen.snapshot),
        seen.remote_updated_at,
        seen.remote_version,
    )
    if saved is None:
        # The link names another record: a push's bookkeeping linked it after this
        # change's lookup missed it (the echo of our create, overtaking it). Writing on
        # would leave the record this change made or moved with no link there, a
        # duplicate of the linked one in every system (seen in a 1,000-op convergence
        # run: a PayPal invoice). Roll back and apply again: the lookup finds the link.
        raise RetryLater(
            f"{change.entity_type} {change.external_id} of connection {change.connection_id}"
            " was linked to another record meanwhile; applying it again"
        )


async def derive_invoices(conn: Conn, moves: Mapping[tuple[uuid.UUID, uuid.UUID], Move]) -> int:
    """Derive again the amount due and status of each (tenant, invoice) in ``moves`` from
    its live payments (:mod:`services.processor.amounts`), in the caller's transaction,
    after every change of its batch: a new version and an outbox row for each invoice that
    changes, pushed like any change, to every system (:class:`amounts.Move` says why).
    Both apply paths end here. Returns how many invoices changed."""
    if not moves:
        return 0
    tenants = [t for t, _ in moves]
    ids = [i for _, i in moves]
    # The set-based path leaves generic plans on (batch.PLAN_GENERIC): plan these for their
    # arguments, or a generic plan of the payments' read may scan the table.
    await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
    invoices = await conn.fetch(
        """
        SELECT i.id, i.tenant_id, i.data, i.field_meta, i.version, i.deleted_at
          FROM invoices i
          JOIN unnest($1::uuid[], $2::uuid[]) AS w(t, i) ON i.tenant_id = w.t AND i.id = w.i
         ORDER BY i.id FOR UPDATE OF i
        """,
        tenants,
        ids,
    )
    if not invoices:
        return 0
    # Read in a statement of its own, after the invoices are locked: its snapshot then
    # holds the payments of a concurrent batch (another partition) that held the lock
    # first and has committed, so the last derivation to commit counts every payment.
    # ANY rather than a join with unnest: the planner then probes payments_tenant_invoice_idx
    # (migration 0014) where it hash-joined a scan of the table (EXPLAIN ANALYZE, 200,000
    # payments, 20 invoices: 0.3 ms against 50-70 ms). Each row is kept for its own
    # (tenant, invoice) only, below.
    payments: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = {}
    for p in await conn.fetch(
        """
        SELECT p.tenant_id, p.data ->> 'invoice_id' AS invoice_id, p.data
          FROM payments p
         WHERE p.tenant_id = ANY($1::uuid[]) AND p.data ->> 'invoice_id' = ANY($2::text[])
           AND p.deleted_at IS NULL
        """,
        list({r["tenant_id"] for r in invoices}),
        [str(r["id"]) for r in invoices],
    ):
        payments.setdefault((p["tenant_id"], p["invoice_id"]), []).append(p["data"])
    updates: list[tuple[uuid.UUID, uuid.UUID, dict[str, Any], dict[str, Any], int]] = []
    outbox: list[tuple[Any, ...]] = []
    for r in invoices:
        move = moves[(r["tenant_id"], r["id"])]
        record = Record(
            r["id"],
            RecordState(r["data"], meta_from_json(r["field_meta"])),
            r["version"],
            r["deleted_at"] is not None,
        )
        state = derive(record, payments.get((r["tenant_id"], str(r["id"])), ()), move.ts)
        if state is None:
            continue
        version = record.version + 1
        values = dict(state.values)
        updates.append((r["id"], r["tenant_id"], values, meta_to_json(dict(state.meta)), version))
        change_id, payload = record_payload(
            r["tenant_id"], "invoice", r["id"], version, values, origin=None
        )
        outbox.append((change_id, r["tenant_id"], "invoice", r["id"], version, None, payload))
    if not updates:
        return 0
    columns = [list(c) for c in zip(*updates, strict=True)]
    await conn.execute(
        """
        UPDATE invoices AS r
           SET data = u.d, field_meta = u.m, version = u.v, updated_at = now()
          FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[], $4::jsonb[], $5::int[])
               AS u(i, t, d, m, v)
         WHERE r.id = u.i AND r.tenant_id = u.t
        """,
        *columns,
    )
    await conn.execute(
        """
        INSERT INTO outbox (change_id, tenant_id, entity_type, entity_id, version,
                            origin_connection_id, payload)
        SELECT i, t, e, r, v, o, p::json
          FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int[],
                      $6::uuid[], $7::text[]) AS u(i, t, e, r, v, o, p)
        """,
        *[list(c) for c in zip(*outbox, strict=True)],
    )
    return len(updates)
