"""The set-based fast path of the apply step: a whole batch in a handful of statements.

Applying change by change costs about nine round trips to Postgres per event (measured:
~450 events/s). Here the batch's dedup rows, links, match candidates and records are read
with one statement each, the changes are decided in order in memory by the same
:func:`services.processor.decide.decide` as the per-event path, and the results are
written back with one statement per table. Same outcomes, same rows: the integration
tests run against both paths. If Postgres rejects the batch (a constraint the checks in
Python did not foresee), the caller rolls back and replays it change by change, so only
the culprit becomes a dead letter.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from crmsync.common.canonical import TABLES, InvalidRecordError, hash_of_state_json, state_json
from crmsync.common.db import Conn
from crmsync.common.pushes import Push, not_parked, queue_pushes
from services.processor.amounts import invoices_moved
from services.processor.apply import (
    MATCH_ON,
    PUSHED_MATCH_ON,
    Applied,
    ForeignReferenceError,
    InvalidChangeError,
    PushedKey,
    QueuedPush,
    conflict_row,
    echoes,
    foreign_link,
    foreign_references,
    forget_processed,
    link_pushes,
    match_key,
    meta_from_json,
    outbox_row,
    pushed_key,
    pushed_lock,
    pushed_records,
    pushes_queued,
)
from services.processor.decide import (
    InboundChange,
    Link,
    LinkWrite,
    Outcome,
    Record,
    Reference,
    Write,
    decide,
)
from services.processor.merge import FieldMeta, Policy, RecordState
from services.processor.waiting import Waits

LinkKey = tuple[uuid.UUID, str, str]  # connection, entity type, external id


@dataclass
class _Link:
    tenant_id: uuid.UUID
    view: Link  # as decide() sees it: replaced by each change that writes it
    # None: as the row has it (a delete writes no hash; the batch does not read it).
    seen_hash: str | None = None
    exists: bool = True
    dirty: bool = False


@dataclass
class _Record:
    entity_type: str
    tenant_id: uuid.UUID
    view: Record  # as decide() sees it: replaced by each change that writes it
    created_at: datetime | None  # None: created by this batch, after every loaded one
    is_new: bool = False
    dirty: bool = False


@dataclass
class _Writes:
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    conflicts: list[tuple[Any, ...]] = field(default_factory=list)


class ChangesRejectedError(asyncpg.IntegrityConstraintViolationError):
    """Changes of a batch that must not be applied (``rejected``: index in the batch → why),
    found before anything was written. An integrity violation is what they are, and the
    caller's answer to one (services/processor/pipeline.py) is the right one here too: roll
    the batch back and replay it change by change, where each of them becomes a dead letter
    of its own and the rest applies."""

    def __init__(self, rejected: dict[int, InvalidChangeError]) -> None:
        first = next(iter(rejected.values()))
        super().__init__(f"{len(rejected)} change(s) rejected, the first: {first}")
        self.rejected = rejected


class _Ids:
    """Random (version 4) UUIDs drawn from one ``os.urandom`` call per 256: each call is a
    system call, and ``uuid.uuid4`` made three per new record (5 % of the apply step's
    CPU in the bulk profile)."""

    CHUNK = 256

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def __call__(self) -> uuid.UUID:
        if self._at >= len(self._pool):
            self._pool = os.urandom(16 * self.CHUNK)
            self._at = 0
        raw = self._pool[self._at : self._at + 16]
        self._at += 16
        return uuid.UUID(bytes=raw, version=4)


class _Texts:
    """The JSON text of each state this batch encoded, by the dict's identity (held, so
    the identity stays its own). A change's values are hashed (decide's rule 5) as
    ``state_json`` text, and a new record's data, its first link's snapshot and its outbox
    event's state are those values again: encoded once here, they are written as that one
    text instead of three more encodings (bench/README.md, "Eighth round"). The states
    decide() returns are new dicts, never changed after (its inputs are not changed)."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Mapping[str, Any], str]] = {}

    def put(self, values: Mapping[str, Any], text: str) -> str:
        self._by_id[id(values)] = (values, text)
        return text

    def of(self, values: Mapping[str, Any]) -> str:
        known = self._by_id.get(id(values))
        if known is not None and known[0] is values:
            return known[1]
        return self.put(values, state_json(values if isinstance(values, dict) else dict(values)))


@functools.lru_cache(maxsize=256)
def _json_key(name: str) -> str:
    return json.dumps(name)


@functools.lru_cache(maxsize=4096)
def _meta_entry(ts: datetime, source: str) -> str:
    return json.dumps({"ts": ts.isoformat(), "source": source})


def meta_json(meta: Mapping[str, FieldMeta]) -> str:
    """``field_meta`` as JSON text, the same document as ``apply.meta_to_json``. A record's
    fields mostly share one source and timestamp, so each distinct pair is rendered once:
    building the dicts and formatting every timestamp was 14 % of the apply step's CPU."""
    return (
        "{"
        + ",".join(f"{_json_key(name)}:{_meta_entry(m.ts, m.source)}" for name, m in meta.items())
        + "}"
    )


# Links that existed when the batch read them: update them (an upsert keeps one statement).
# A NULL hash is one the batch did not learn (a delete tells none): the row keeps its own.
_LINK_UPSERT = """
    ON CONFLICT (connection_id, entity_type, external_id) DO UPDATE
       SET last_seen_hash = coalesce(EXCLUDED.last_seen_hash, entity_links.last_seen_hash),
           last_seen_snapshot = EXCLUDED.last_seen_snapshot,
           remote_updated_at = EXCLUDED.remote_updated_at,
           remote_version = coalesce(EXCLUDED.remote_version, entity_links.remote_version),
           updated_at = now()
"""


# Plan-cache modes for parts of a batch's transaction. Pools plan every statement for its
# arguments (crmsync.common.db.SERVER_SETTINGS), and that applies to every cached plan of
# the session, the foreign-key triggers' too: each inserted row's check ("SELECT 1 FROM
# tenants WHERE id = $1 FOR KEY SHARE") was planned anew, about half of PostgreSQL's time
# per event (perf of the backends while the processor drained 100,000 changes). Inserts
# from unnest have one possible plan, so they run under generic plans; lookups and the
# UPDATE joins, whose plans depend on the tables' sizes, keep custom ones.
PLAN_GENERIC = "SET LOCAL plan_cache_mode = auto"
PLAN_CUSTOM = "SET LOCAL plan_cache_mode = force_custom_plan"


_match_key = match_key


class _Batch:
    def __init__(self, conn: Conn, policy_of: Callable[[InboundChange], Policy]) -> None:
        self.conn = conn
        self.policy_of = policy_of
        self.links: dict[LinkKey, _Link] = {}
        self.records: dict[uuid.UUID, _Record] = {}
        # (tenant, type, match key) -> candidate record ids, oldest first.
        self.candidates: dict[tuple[uuid.UUID, str, str], list[uuid.UUID]] = {}
        # (tenant, connection, type, key) -> records queued for a push to that connection
        # and not linked there, oldest first, with their first-contact keys: what its
        # unlinked change may echo (apply.PUSHED_MATCH_ON).
        self.pushing: dict[tuple[uuid.UUID, uuid.UUID, str, PushedKey], list[QueuedPush]] = {}
        # (connection, type, entity id) pairs already linked: a match must not reuse them.
        self.linked: set[tuple[uuid.UUID, str, uuid.UUID]] = set()
        self.writes = _Writes()
        self.new_id = _Ids()
        self.texts = _Texts()
        self.pushes: list[Push] = []

    # -- reads --------------------------------------------------------------------------

    async def fresh(self, changes: Sequence[InboundChange]) -> list[bool]:
        """True for each change whose (connection, event id) was not processed before."""
        first: dict[tuple[uuid.UUID, str], int] = {}
        for i, c in enumerate(changes):
            first.setdefault((c.connection_id, c.dedup_key), i)
        keys = list(first)
        rows = await self.conn.fetch(
            """
            INSERT INTO processed_events (connection_id, provider_event_id)
            SELECT * FROM unnest($1::uuid[], $2::text[])
            ON CONFLICT DO NOTHING RETURNING connection_id, provider_event_id
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        inserted = {(r["connection_id"], r["provider_event_id"]) for r in rows}
        return [
            first[(c.connection_id, c.dedup_key)] == i
            and (c.connection_id, c.dedup_key) in inserted
            for i, c in enumerate(changes)
        ]

    async def load(
        self, changes: Sequence[InboundChange], values: Sequence[dict[str, Any]]
    ) -> None:
        keys = list({(c.connection_id, c.entity_type, c.external_id) for c in changes})
        for r in await self.conn.fetch(
            """
            SELECT l.connection_id, l.entity_type, l.external_id, l.entity_id, l.tenant_id,
                   l.last_seen_snapshot, l.last_pushed_hash, l.remote_updated_at,
                   l.last_pushed_version, l.pushed_updated_at, l.pushes, l.remote_version
              FROM entity_links l
              JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS k(c, t, x)
                ON l.connection_id = k.c AND l.entity_type = k.t AND l.external_id = k.x
               FOR UPDATE OF l
            """,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        ):
            key = (r["connection_id"], r["entity_type"], r["external_id"])
            self.links[key] = _Link(
                r["tenant_id"],
                Link(
                    r["entity_id"],
                    r["last_seen_snapshot"],
                    r["last_pushed_hash"],
                    r["last_pushed_version"],
                    r["remote_updated_at"],
                    r["pushed_updated_at"],
                    link_pushes(r["pushes"]),
                    r["remote_version"],
                ),
            )
            self.linked.add((r["connection_id"], r["entity_type"], r["entity_id"]))

        # A record is loaded for the tenant of the change that reaches it: through a link
        # that names another tenant's record, nothing is found (see foreign_links).
        wanted: dict[str, set[tuple[uuid.UUID, uuid.UUID]]] = {t: set() for t in TABLES}
        for c in changes:
            link = self.links.get((c.connection_id, c.entity_type, c.external_id))
            if link is not None:
                wanted[c.entity_type].add((link.view.entity_id, c.tenant_id))
        await self._load_candidates(changes, values, wanted)
        for entity_type, pairs in wanted.items():
            if not pairs:
                continue
            rows = await self.conn.fetch(
                f"""
                SELECT r.id, r.tenant_id, r.data, r.field_meta, r.version, r.deleted_at,
                       r.created_at
                  FROM {TABLES[entity_type]} r
                  JOIN unnest($1::uuid[], $2::uuid[]) AS w(i, t)
                    ON r.id = w.i AND r.tenant_id = w.t
                 ORDER BY r.id FOR UPDATE OF r
                """,  # noqa: S608 - the table name comes from TABLES
                [p[0] for p in pairs],
                [p[1] for p in pairs],
            )
            for r in rows:
                state = RecordState(r["data"], meta_from_json(r["field_meta"]))
                self.records[r["id"]] = _Record(
                    entity_type,
                    r["tenant_id"],
                    Record(r["id"], state, r["version"], r["deleted_at"] is not None),
                    r["created_at"],
                )

    def foreign_links(self, changes: Sequence[InboundChange]) -> dict[int, ForeignReferenceError]:
        """Changes whose connection's link names a record their tenant does not have, by
        index: through it they would change or delete another tenant's record."""
        found: dict[int, ForeignReferenceError] = {}
        for i, c in enumerate(changes):
            link = self.links.get((c.connection_id, c.entity_type, c.external_id))
            if link is None:
                continue
            record = self.records.get(link.view.entity_id)
            if record is None or record.tenant_id != c.tenant_id or link.tenant_id != c.tenant_id:
                found[i] = foreign_link(c, link.view.entity_id)
        return found

    async def _load_candidates(
        self,
        changes: Sequence[InboundChange],
        values: Sequence[dict[str, Any]],
        wanted: dict[str, set[tuple[uuid.UUID, uuid.UUID]]],
    ) -> None:
        """Existing records unlinked changes might be the same thing as (first contact)."""
        await self._load_pushing(changes, values, wanted)
        by_type: dict[str, set[tuple[uuid.UUID, str]]] = {}
        for c, v in zip(changes, values, strict=True):
            key = _match_key(c.entity_type, v)
            if key and (c.connection_id, c.entity_type, c.external_id) not in self.links:
                by_type.setdefault(c.entity_type, set()).add((c.tenant_id, key))
        for entity_type, pairs in by_type.items():
            # Serialise first contact per key across processors (sorted: no lock cycles).
            lock_names = sorted(f"match:{t}:{entity_type}:{k}" for t, k in pairs)
            await self.conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(n, 0)) FROM unnest($1::text[]) AS n",
                lock_names,
            )
            column = MATCH_ON[entity_type][1]
            rows = await self.conn.fetch(
                f"""
                SELECT r.id, r.tenant_id, r.{column} AS k FROM {TABLES[entity_type]} r
                  JOIN unnest($1::uuid[], $2::text[]) AS w(t, k)
                    ON r.tenant_id = w.t AND r.{column} = w.k
                 WHERE r.deleted_at IS NULL
                 ORDER BY r.created_at, r.id
                """,  # noqa: S608 - table and column come from the fixed maps
                [p[0] for p in pairs],
                [p[1] for p in pairs],
            )
            for r in rows:
                self.candidates.setdefault((r["tenant_id"], entity_type, r["k"]), []).append(
                    r["id"]
                )
                wanted[entity_type].add((r["id"], r["tenant_id"]))
            if rows:
                for r in await self.conn.fetch(
                    """
                    SELECT l.connection_id, l.entity_id FROM entity_links l
                      JOIN unnest($2::uuid[], $3::uuid[]) AS w(i, t)
                        ON l.entity_id = w.i AND l.tenant_id = w.t
                     WHERE l.entity_type = $1
                    """,
                    entity_type,
                    [r["id"] for r in rows],
                    [r["tenant_id"] for r in rows],
                ):
                    self.linked.add((r["connection_id"], entity_type, r["entity_id"]))

    async def _load_pushing(
        self,
        changes: Sequence[InboundChange],
        values: Sequence[dict[str, Any]],
        wanted: dict[str, set[tuple[uuid.UUID, uuid.UUID]]],
    ) -> None:
        """Records being pushed to a change's connection that its unlinked change may be
        the echo of (apply.PUSHED_MATCH_ON), as apply._match finds them. Looked for for
        every unlinked upsert, whether or not its first-contact key finds a record (an
        earlier change of the batch may take that record), but only from a connection
        with pushes of its kind queued: a bulk of new records from a connection nothing
        is pushed to costs one statement (locking every change's key cost 25 % of the
        apply step's wall time, bench.apply_cpu). Where records are found, their keys are
        locked and the records read again under the locks: what another transaction
        linked meanwhile is then left out, as apply._match leaves it."""
        unlinked = [
            (c, v)
            for c, v in zip(changes, values, strict=True)
            if c.op == "upsert"
            and c.entity_type in PUSHED_MATCH_ON
            and c.record_key not in self.links
        ]
        queued = await pushes_queued(
            self.conn, {(c.connection_id, c.entity_type) for c, _ in unlinked}
        )
        if not queued:
            return
        keys: dict[str, set[tuple[uuid.UUID, uuid.UUID, PushedKey]]] = {}
        for c, v in unlinked:
            key = pushed_key(c.entity_type, v)
            if key is not None and (c.connection_id, c.entity_type) in queued:
                keys.setdefault(c.entity_type, set()).add((c.tenant_id, c.connection_id, key))
        hits: dict[str, list[tuple[uuid.UUID, uuid.UUID, PushedKey]]] = {}
        for entity_type, of_type in keys.items():
            ordered = sorted(of_type, key=lambda w: (w[0], w[1], tuple(x or "" for x in w[2])))
            found = await pushed_records(self.conn, entity_type, ordered)
            hits[entity_type] = [w for w, f in zip(ordered, found, strict=True) if f]
        if not any(hits.values()):
            return
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(n, 0)) FROM unnest($1::text[]) AS n",
            sorted({pushed_lock(t, e, k) for e, ws in hits.items() for t, _c, k in ws}),
        )
        for entity_type, hit in hits.items():
            found = await pushed_records(self.conn, entity_type, hit)
            for (tenant_id, connection_id, key), pushing in zip(hit, found, strict=True):
                if pushing:
                    self.pushing[(tenant_id, connection_id, entity_type, key)] = pushing
                    wanted[entity_type].update((p.entity_id, tenant_id) for p in pushing)

    # -- the rules (decide), in memory ----------------------------------------------------

    def apply(
        self, change: InboundChange, values: dict[str, Any], behind: Reference | None
    ) -> Applied:
        key = change.record_key
        entry = self.links.get(key)
        link = entry.view if entry is not None else None
        if link is not None:
            found: _Record | None = self.records[link.entity_id]  # foreign_links checked
        elif change.op == "upsert":
            matched = self._match(change, values)
            found = self.records[matched] if matched is not None else None
        else:
            found = None
        incoming = self.texts.of(values) if change.op == "upsert" else None
        decision = decide(
            change,
            values,
            link,
            found.view if found is not None else None,
            self.policy_of(change),
            behind=behind,
            incoming_hash=hash_of_state_json(incoming) if incoming is not None else None,
        )
        if decision.outcome is Outcome.WAITING:
            return Applied(decision.outcome, waits_for=decision.waits_for, rule=decision.rule)
        entity_id = decision.entity_id
        if decision.write is Write.CREATE:
            entity_id = self.new_id()
        if entity_id is None:  # a delete of nothing this connection told us of
            return Applied(decision.outcome, rule=decision.rule)
        invoices = invoices_moved(
            change.entity_type, found.view if found is not None else None, decision
        )
        after = decision.record_after(entity_id)
        if after is not None:
            self._write(change, found, after)
        change_id = None
        if decision.outbox is not None:
            state = decision.outbox.values
            if decision.write is Write.CREATE and incoming is not None and state == values:
                # A new record holds the change's own values (each the same object, merged
                # onto nothing), so their text is the one just hashed.
                self.texts.put(state, incoming)
            row = outbox_row(
                change,
                entity_id,
                decision.outbox,
                new_id=self.new_id,
                state_text=self.texts.of(state),
            )
            self.writes.outbox.append(row)
            change_id = row[0]
        for conflict in decision.conflicts:
            self.writes.conflicts.append(conflict_row(change, entity_id, conflict))
        if decision.link is not None:
            self._remember(key, change, entity_id, decision.link)
        if decision.push_again is not None:
            self.pushes.append(
                Push(
                    change.tenant_id,
                    change.connection_id,
                    change.entity_type,
                    entity_id,
                    decision.push_again,
                )
            )
        return Applied(
            decision.outcome,
            entity_id,
            decision.version,
            change_id,
            invoices=invoices,
            rule=decision.rule,
        )

    def _write(self, change: InboundChange, found: _Record | None, after: Record) -> None:
        if found is None:
            found = _Record(change.entity_type, change.tenant_id, after, None, is_new=True)
            self.records[after.entity_id] = found
        else:
            old_key = _match_key(found.entity_type, found.view.state.values)
            found.view = after
            found.dirty = True
            if old_key == _match_key(found.entity_type, after.state.values):
                return
        self._index(found)

    def _index(self, record: _Record) -> None:
        """Make a new record, or one whose match key changed, a candidate for first
        contact under its key, in age order as apply._match would find it.

        The links other connections hold to a record were read only if it was a candidate
        as the batch began: a match that would give a connection a second link to it fails
        the batch on entity_links' unique key, and the replay change by change decides."""
        entity_id = record.view.entity_id
        key = _match_key(record.entity_type, record.view.state.values)
        if key is None:
            return
        ids = self.candidates.setdefault((record.tenant_id, record.entity_type, key), [])
        if record.created_at is None:
            ids.append(entity_id)  # created by this batch: younger than every loaded one
            return
        rank = (record.created_at, entity_id)
        at = 0
        while at < len(ids):
            other = self.records.get(ids[at])
            if other is None or other.created_at is None or (other.created_at, ids[at]) > rank:
                break
            at += 1
        ids.insert(at, entity_id)

    def _match(self, change: InboundChange, values: dict[str, Any]) -> uuid.UUID | None:
        key = _match_key(change.entity_type, values)
        if key is not None:
            for candidate in self.candidates.get((change.tenant_id, change.entity_type, key), []):
                record = self.records.get(candidate)
                if record is None or record.view.deleted:
                    continue
                if _match_key(record.entity_type, record.view.state.values) != key:
                    continue  # its key changed earlier in this batch
                if (change.connection_id, change.entity_type, candidate) not in self.linked:
                    return candidate
        if change.entity_type in PUSHED_MATCH_ON:
            return self._match_pushed(change, values, key)
        return None

    def _match_pushed(
        self, change: InboundChange, values: dict[str, Any], change_key: str | None
    ) -> uuid.UUID | None:
        """apply._match's echo of a push, in memory: the oldest record being pushed to the
        change's connection under its values, still live, still so valued, its first-
        contact key not another, and not linked there by an earlier change of the batch."""
        if not self.pushing:
            return None  # nothing being pushed where this batch's changes come from
        key = pushed_key(change.entity_type, values)
        if key is None:
            return None
        pushing = self.pushing.get(
            (change.tenant_id, change.connection_id, change.entity_type, key), []
        )
        for candidate in pushing:
            record = self.records.get(candidate.entity_id)
            if record is None or record.view.deleted:
                continue
            state = record.view.state.values
            if pushed_key(change.entity_type, state) != key:
                continue  # changed earlier in this batch
            if not echoes(_match_key(change.entity_type, state), change_key):
                continue
            if (change.connection_id, change.entity_type, candidate.entity_id) not in self.linked:
                return candidate.entity_id
        return None

    def _remember(
        self, key: LinkKey, change: InboundChange, entity_id: uuid.UUID, seen: LinkWrite
    ) -> None:
        entry = self.links.get(key)
        if entry is None:  # a new link: no push yet, and only upserts make one
            view = Link(
                entity_id,
                seen.snapshot,
                None,
                None,
                seen.remote_updated_at,
                remote_version=seen.remote_version,
            )
            self.links[key] = _Link(
                change.tenant_id, view, seen.seen_hash, exists=False, dirty=True
            )
            self.linked.add((change.connection_id, change.entity_type, entity_id))
            return
        old = entry.view
        entry.view = Link(
            entity_id,
            seen.snapshot if seen.snapshot is not None else old.snapshot,
            old.last_pushed_hash,
            old.last_pushed_version,
            seen.remote_updated_at,
            old.pushed_updated_at,
            old.pushes,
            seen.remote_version if seen.remote_version is not None else old.remote_version,
        )
        if seen.seen_hash is not None:
            entry.seen_hash = seen.seen_hash
        entry.dirty = True

    # -- writes -------------------------------------------------------------------------

    def _snapshot_json(self, link: Link) -> str | None:
        return self.texts.of(link.snapshot) if link.snapshot is not None else None

    async def flush(self) -> None:
        """Write the batch back: updates of existing records first, planned for their
        arguments (a join with the table); then every insert, under generic plans."""
        for entity_type, table in TABLES.items():
            changed = [
                (i, r)
                for i, r in self.records.items()
                if r.entity_type == entity_type and r.dirty and not r.is_new
            ]
            if changed:
                await self.conn.execute(
                    f"""
                    UPDATE {table} AS r
                       SET data = u.d::jsonb, field_meta = u.m::jsonb, version = u.v,
                           updated_at = now(),
                           deleted_at = CASE WHEN u.x THEN coalesce(r.deleted_at, now()) END
                      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bool[],
                                  $6::uuid[]) AS u(i, d, m, v, x, t)
                     WHERE r.id = u.i AND r.tenant_id = u.t
                    """,  # noqa: S608 - the table name comes from TABLES
                    [i for i, _ in changed],
                    [self.texts.of(r.view.state.values) for _, r in changed],
                    [meta_json(r.view.state.meta) for _, r in changed],
                    [r.view.version for _, r in changed],
                    [r.view.deleted for _, r in changed],
                    [r.tenant_id for _, r in changed],
                )
        await self.conn.execute(PLAN_GENERIC)
        # Echoes that show a system fell behind (see decide's push_again), unless it
        # refused that version already.
        await queue_pushes(self.conn, await not_parked(self.conn, self.pushes), due_now=True)
        for entity_type, table in TABLES.items():
            new = [
                (i, r) for i, r in self.records.items() if r.entity_type == entity_type and r.is_new
            ]
            if new:
                await self.conn.execute(
                    f"""
                    INSERT INTO {table} (id, tenant_id, data, field_meta, version, deleted_at)
                    SELECT i, t, d::jsonb, m::jsonb, v, CASE WHEN x THEN now() END
                      FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                                  $6::bool[]) AS u(i, t, d, m, v, x)
                    """,  # noqa: S608 - the table name comes from TABLES
                    [i for i, _ in new],
                    [r.tenant_id for _, r in new],
                    [self.texts.of(r.view.state.values) for _, r in new],
                    [meta_json(r.view.state.meta) for _, r in new],
                    [r.view.version for _, r in new],
                    [r.view.deleted for _, r in new],
                )
        await self._flush_links()
        if self.writes.outbox:
            cols = list(zip(*self.writes.outbox, strict=True))
            await self.conn.execute(
                """
                INSERT INTO outbox (change_id, tenant_id, entity_type, entity_id, version,
                                    origin_connection_id, payload)
                SELECT i, t, e, r, v, o, p::json
                  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int[],
                              $6::uuid[], $7::text[]) AS u(i, t, e, r, v, o, p)
                """,
                *[list(c) for c in cols],
            )
        if self.writes.conflicts:
            cols = list(zip(*self.writes.conflicts, strict=True))
            await self.conn.execute(
                """
                INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                                       incoming_value, incoming_connection_id, incoming_source_ts)
                SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::jsonb[],
                                     $6::jsonb[], $7::uuid[], $8::timestamptz[])
                """,
                *[list(c) for c in cols],
            )

    async def _flush_links(self) -> None:
        dirty = [(k, link) for k, link in self.links.items() if link.dirty]
        if not dirty:
            return
        # Links this batch created are inserted plainly: ON CONFLICT makes PostgreSQL
        # insert speculatively (probe, insert, confirm) for every row. A concurrent insert of
        # the same key (only during a partition handover) then fails the batch, which is
        # replayed change by change, and that path upserts.
        for links, conflict in (
            ([(k, link) for k, link in dirty if not link.exists], ""),
            ([(k, link) for k, link in dirty if link.exists], _LINK_UPSERT),
        ):
            if not links:
                continue
            await self.conn.execute(
                """
                INSERT INTO entity_links (tenant_id, connection_id, entity_type, external_id,
                                          entity_id, last_seen_hash, last_seen_snapshot,
                                          remote_updated_at, remote_version)
                SELECT u.t, u.c, u.e, u.x, u.i, u.h, u.s::jsonb, u.r, u.v
                  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[],
                              $6::text[], $7::text[], $8::timestamptz[], $9::text[])
                       AS u(t, c, e, x, i, h, s, r, v)
                """  # noqa: S608 - the suffix is one of two constants
                + conflict,
                [link.tenant_id for _, link in links],
                [k[0] for k, _ in links],
                [k[1] for k, _ in links],
                [k[2] for k, _ in links],
                [link.view.entity_id for _, link in links],
                [link.seen_hash for _, link in links],
                [self._snapshot_json(link.view) for _, link in links],
                [link.view.remote_updated_at for _, link in links],
                [link.view.remote_version for _, link in links],
            )


async def apply_batch(
    conn: Conn,
    changes: Sequence[InboundChange],
    values: Sequence[dict[str, Any]],
    policy_of: Callable[[InboundChange], Policy],
    waits: Waits,
    *,
    connections: Collection[tuple[uuid.UUID, uuid.UUID]] = (),
) -> list[Applied]:
    """Apply validated changes (``values``: their canonical fields) in the caller's
    transaction, with the same outcomes as applying them one by one; ``waits`` says which
    records have a change waiting before them, and learns of those that wait here;
    ``connections``: (tenant, connection) pairs the caller found in this transaction.

    Raises :class:`ChangesRejectedError`, having written nothing that the caller's
    rollback would not undo, when a change names what its tenant does not have (a
    reference, its connection, its link's record) or when decide() refuses the record a
    change would make (totals that disagree): the one-by-one path dead-letters it.
    """
    if not changes:
        return []
    batch = _Batch(conn, policy_of)
    await conn.execute(PLAN_GENERIC)
    fresh = await batch.fresh(changes)
    await conn.execute(PLAN_CUSTOM)
    live = [(i, c, v) for i, (c, v, f) in enumerate(zip(changes, values, fresh, strict=True)) if f]
    foreign = await foreign_references(conn, [(c, v) for _, c, v in live], connections=connections)
    await batch.load([c for _, c, _ in live], [v for _, _, v in live])
    rejected: dict[int, InvalidChangeError] = {
        live[j][0]: problem for j, problem in enumerate(foreign) if problem is not None
    }
    for j, problem in batch.foreign_links([c for _, c, _ in live]).items():
        rejected.setdefault(live[j][0], problem)
    if rejected:
        raise ChangesRejectedError(rejected)
    results: list[Applied] = []
    for i, (change, value, is_fresh) in enumerate(zip(changes, values, fresh, strict=True)):
        if not is_fresh:
            results.append(Applied(Outcome.DUPLICATE))
            continue
        try:
            results.append(waits.note(change, batch.apply(change, value, waits.behind(change))))
        except InvalidRecordError as exc:  # decide() found a merged record it must not store
            raise ChangesRejectedError({i: InvalidChangeError(exc.reason, exc.detail)}) from None
    await batch.flush()
    waiting = [c for c, r in zip(changes, results, strict=True) if r.outcome is Outcome.WAITING]
    if waiting:
        await forget_processed(conn, waiting)
    return results
