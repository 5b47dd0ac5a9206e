"""From Kafka records to applied changes: parse, dead-letter the bad, apply the rest.

A batch is applied in one Postgres transaction, each change in a savepoint, so a change
Postgres rejects (a foreign key to a deleted connection, say) becomes a dead letter and
the rest of the batch still commits. When Postgres itself is unavailable the whole batch
is retried with backoff: waiting is right for an outage, skipping would lose events.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from connectors.registry import PROVIDERS, connector
from connectors.spec import REFERENCE_FIELDS
from crmsync.common.accounting import record_inbound_skips
from crmsync.common.connections import connection_owners
from crmsync.common.db import Conn
from crmsync.common.faults import retry_transient
from crmsync.common.links import entity_ids
from crmsync.common.supervise import TaskHealth
from schemas import topics
from schemas.changes import InternalChange
from services.processor import metrics
from services.processor.amounts import invoice_moves
from services.processor.apply import (
    Applied,
    apply_change,
    canonical_values,
    derive_invoices,
    policy_from,
)
from services.processor.batch import apply_batch
from services.processor.deadletters import Source, dead_letter
from services.processor.decide import InboundChange, Outcome
from services.processor.failures import Action, action_for, parked_as
from services.processor.tombstones import refused
from services.processor.waiting import (
    Parked,
    ToPark,
    Waits,
    park,
    parked_for,
    pause_reference,
    take_expired,
    take_ready,
)

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "crmsync_outbox"
# The metrics' source label of parked changes applied on release.
RELEASED = "waiting_changes"
# The dead letter of a change whose reference was not linked in time (invariant 10).
MISSING_REFERENCE = "missing_reference"


@dataclass(frozen=True)
class Parsed:
    source: Source
    change: InboundChange | None = None
    reason: str = ""
    detail: str = ""
    parked: Parked | None = None  # released from waiting_changes: its row's place
    paused: bool = False  # its connection's inbound is paused: it waits, unapplied
    erased: bool = False  # a privacy erase's tombstone refuses it (services.processor.tombstones)


def parse_internal(source: Source) -> Parsed:
    try:
        event = InternalChange.model_validate_json(source.value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        return Parsed(source, reason="unparseable", detail=f"{where}: {first['msg']}")
    c = event.change
    return Parsed(
        source,
        InboundChange(
            tenant_id=event.tenant_id,
            connection_id=event.connection_id,
            dedup_key=c.event_id,
            entity_type=c.entity_type,
            op=c.op,
            external_id=c.external_id,
            source_ts=c.occurred_at,
            data=dict(c.data),
            received_at=event.received_at,
            refs={str(k): v for k, v in c.refs.items()},
            version=event.record_version,
        ),
    )


# The providers whose record versions are a counter that rises with every write
# (ApiSpec.versions_ordered, from each connector.toml): a change from one of their
# connections is ordered by its version too (services.processor.decide, rule 1). The
# generic provider's connections have no version, the internal service's none either.
VERSIONS_ORDERED = frozenset(
    p
    for p in PROVIDERS
    if p not in ("generic", "internal")
    and (api := connector(p).api) is not None
    and api.versions_ordered
)


# Topics whose records are InternalChange events (internal services, normalised providers).
CHANGE_TOPICS = (topics.CHANGES_INTERNAL.name, topics.CHANGES_NORMALIZED.name)


async def resolve_refs(conn: Conn, parsed: Sequence[Parsed]) -> list[Parsed]:
    """Move each change's ``refs`` (the source's ids of referenced records) that its
    connection has linked into ``data`` as canonical ids, in one query per batch.

    A reference to a record the connection has not told us about yet stays in ``refs``:
    the change then waits for it (decide's rule 0, invariant 10). The canonical id of a
    reference is never guessed.
    """
    wanted = {
        (p.change.connection_id, REFERENCE_FIELDS[f], x)
        for p in parsed
        if p.change is not None
        for f, x in p.change.refs.items()
        if f in REFERENCE_FIELDS
    }
    if not wanted:
        return list(parsed)
    found = await entity_ids(conn, wanted)
    resolved: list[Parsed] = []
    for p in parsed:
        change = p.change
        if change is None or not change.refs:
            resolved.append(p)
            continue
        data = dict(change.data)
        missing: dict[str, str] = {}
        for field_name, external_id in change.refs.items():
            entity = REFERENCE_FIELDS.get(field_name)
            if entity is None:
                continue
            target = found.get((change.connection_id, entity, external_id))
            if target is not None:
                data[field_name] = str(target)
            else:
                missing[field_name] = external_id
        resolved.append(replace(p, change=replace(change, data=data, refs=missing)))
    return resolved


# Changes a transaction of a split batch should hold at least: a batch is split into
# ``concurrency`` transactions only from twice this size. Each transaction runs the
# batch's ~20 statements (reads, SET LOCALs, writes, BEGIN/COMMIT) whatever it holds, and
# below this splitting cost CPU and time: bench.apply_cpu, one transaction against two,
# batch 10 took 0.38 against 0.60-0.74 ms CPU and 1.5-1.7 against 2.6-4.2 ms wall per
# change, while from 50 up two are faster in wall time (bench/README.md, "Ninth round").
MIN_GROUP = 25


@dataclass(frozen=True)
class Known:
    """What a batch's first statement learnt beside its connections
    (crmsync.common.connections.connection_owners), so no statement asks it again."""

    owners: frozenset[tuple[uuid.UUID, uuid.UUID]]  # (tenant, connection) of each found
    erasing: frozenset[uuid.UUID]  # tenants holding a privacy erase's tombstone
    waiting: bool | None  # any change waits in waiting_changes; None: no connection found


def partition_groups(
    sources: Sequence[Source], groups: int, *, min_group: int = 1
) -> list[list[int]]:
    """Split a batch into at most ``groups`` lists of indexes, each holding whole
    partitions (in offset order), balanced by size, and as many as give each about
    ``min_group`` changes at least. A record's key decides its partition, so one entity's
    changes stay in one group, in order."""
    by_partition: dict[tuple[str, int], list[int]] = {}
    for i, s in enumerate(sources):
        by_partition.setdefault((s.topic, s.partition), []).append(i)
    groups = max(1, min(groups, len(sources) // max(1, min_group)))
    bins: list[list[int]] = [[] for _ in range(min(groups, len(by_partition)))]
    for indexes in sorted(by_partition.values(), key=len, reverse=True):
        min(bins, key=len).extend(indexes)
    return [sorted(b) for b in bins if b]


class Processor:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        set_based: bool = True,
        concurrency: int = 1,
        min_group: int = MIN_GROUP,
        health: TaskHealth | None = None,
        on_commit: Callable[[Sequence[Applied | None]], None] | None = None,
    ) -> None:
        self.pool = pool
        # Told of each committed batch's outcomes: the sweep releases what waits for them.
        self.on_commit = on_commit
        # Told when a transient error holds the batch up, so /readyz can say so.
        self.health = health
        # False applies change by change: the reference the set-based path is tested against.
        self.set_based = set_based
        # Transactions applied at once, each for its own partitions of the batch: Python
        # prepares one while PostgreSQL executes another. Safe as two processors are:
        # first contact is serialised by advisory locks, records and links by row locks.
        self.concurrency = concurrency
        # Smaller batches stay one transaction (MIN_GROUP).
        self.min_group = min_group

    async def handle(self, topic: str, sources: Sequence[Source]) -> list[Applied | None]:
        """Apply a batch from one pipeline topic (its unprefixed name, as in
        ``schemas.topics``); None marks a dead-lettered record."""
        if topic not in CHANGE_TOPICS:
            raise ValueError(f"no parser for topic {topic}")
        groups = partition_groups(sources, self.concurrency, min_group=self.min_group)
        if len(groups) <= 1:
            return await self._handle(topic, sources)
        results: list[Applied | None] = [None] * len(sources)
        # Every group runs to its end before an error is raised: a failed group must not
        # leave the other's transaction running unobserved while the batch is retried.
        outcomes = await asyncio.gather(
            *(self._handle(topic, [sources[i] for i in group]) for group in groups),
            return_exceptions=True,
        )
        applied: list[list[Applied | None]] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            applied.append(outcome)
        for group, group_results in zip(groups, applied, strict=True):
            for i, result in zip(group, group_results, strict=True):
                results[i] = result
        return results

    async def _handle(self, topic: str, sources: Sequence[Source]) -> list[Applied | None]:
        parsed = [parse_internal(s) for s in sources]

        def on_retry(exc: BaseException) -> None:
            if self.health is not None:
                self.health.failed(exc)
            metrics.APPLY_RETRIES.inc()

        # A dependency away: this group waits it out in place (the other group's commit
        # stands). Anything else goes up to the agent's BatchGuard.
        results = await retry_transient(
            lambda: self._apply(topic, parsed),
            what="postgres unavailable, retrying the batch",
            log=log,
            on_retry=on_retry,
        )
        if self.health is not None:
            self.health.succeeded()
        return results

    async def _apply(self, topic: str, parsed: Sequence[Parsed]) -> list[Applied | None]:
        started = time.perf_counter()
        if not self.set_based:
            results = await self._apply_each(parsed)
        else:
            try:
                results = await self._apply_batch(parsed)
            except Exception as exc:
                if action_for(exc) is not Action.REJECTED:
                    raise
                # Something Python's checks did not foresee: replay change by change, so
                # only the culprit becomes a dead letter.
                log.warning("batch rejected by postgres, replaying change by change: %s", exc)
                results = await self._apply_each(parsed)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.observe(len(parsed))
        self._count(topic, parsed, results)
        return results

    def _count(
        self, topic: str, parsed: Sequence[Parsed], results: Sequence[Applied | None]
    ) -> None:
        now = datetime.now(UTC)
        # Counted once per outcome, not per event (a labelled child's lookup each time):
        # this method held 1.1 % of the bulk profile (py-spy).
        outcomes: collections.Counter[str] = collections.Counter()
        rules: collections.Counter[str] = collections.Counter()
        for item, result in zip(parsed, results, strict=True):
            outcomes[result.outcome.value if result is not None else "dead_lettered"] += 1
            if result is not None and result.rule is not None:
                rules[result.rule.value] += 1
            if (
                result is not None
                and result.outcome is not Outcome.WAITING
                and item.change
                and item.change.received_at
            ):
                seconds = (now - item.change.received_at).total_seconds()
                metrics.RECEIVED_TO_COMMITTED_SECONDS.observe(max(seconds, 0.0))
        for outcome, count in outcomes.items():
            metrics.EVENTS.labels(topic, outcome).inc(count)
        for rule, count in rules.items():
            metrics.RULES.labels(rule).inc(count)
        if self.on_commit is not None:
            self.on_commit(results)

    async def _apply_batch(self, parsed: Sequence[Parsed]) -> list[Applied | None]:
        """The fast path: dead letters first, then every valid change set-based."""
        async with self.pool.acquire() as conn, conn.transaction():
            settings, parsed, known = await self._settings(conn, parsed)
            parsed = await self._tombstoned(conn, parsed, settings, known.erasing)
            parsed = await resolve_refs(conn, parsed)

            async def one_pass(items: Sequence[Parsed], waits: Waits) -> list[Applied | None]:
                valid: list[tuple[int, InboundChange, dict[str, Any]]] = []
                results: list[Applied | None] = [None] * len(items)
                for i, item in enumerate(items):
                    problem = self._problem(item, settings)
                    if problem is None:
                        assert item.change is not None  # noqa: S101 - _problem checked it
                        try:
                            values = (
                                canonical_values(item.change.entity_type, item.change.data)
                                if item.change.op == "upsert"
                                else {}
                            )
                        except Exception as exc:
                            problem = parked_as(exc)
                            if problem is None:
                                raise
                        else:
                            valid.append((i, item.change, values))
                            continue
                    await self._dead_letter(conn, item, *problem)
                applied = await apply_batch(
                    conn,
                    [c for _, c, _ in valid],
                    [v for _, _, v in valid],
                    lambda c: policy_from(settings[c.connection_id], c.entity_type),
                    waits,
                    connections=known.owners,
                )
                for (i, _, _), result in zip(valid, applied, strict=True):
                    results[i] = result
                return results

            parsed, results = await self._passes(conn, parsed, one_pass, known.waiting)
            await self._finish(conn, parsed, results, settings)
        return results

    async def _apply_each(self, parsed: Sequence[Parsed]) -> list[Applied | None]:
        """The slow path: change by change, each in a savepoint."""
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._apply_each_in(conn, parsed)

    async def _apply_each_in(self, conn: Conn, parsed: Sequence[Parsed]) -> list[Applied | None]:
        settings, parsed, known = await self._settings(conn, parsed)
        parsed = await self._tombstoned(conn, parsed, settings, known.erasing)
        parsed = await resolve_refs(conn, parsed)

        async def one_pass(items: Sequence[Parsed], waits: Waits) -> list[Applied | None]:
            return [await self._one(conn, item, settings, waits) for item in items]

        parsed, results = await self._passes(conn, parsed, one_pass, known.waiting)
        await self._finish(conn, parsed, results, settings)
        return results

    @staticmethod
    async def _passes(
        conn: Conn,
        parsed: Sequence[Parsed],
        one_pass: Callable[[Sequence[Parsed], Waits], Awaitable[list[Applied | None]]],
        anything_waits: bool | None,
    ) -> tuple[list[Parsed], list[Applied | None]]:
        """Apply the batch in order; then, as long as the changes that wait find a record
        this batch linked, apply them again, in order, in a further pass (invariant 10:
        an invoice and its payment in one batch, the payment first). Changes of a record
        with a change parked before wait behind it (``anything_waits``: whether any change
        waits at all, if known). Returns the changes as last resolved."""
        items = list(parsed)
        results: list[Applied | None] = [None] * len(items)
        changes = [p.change for p in items if p.change is not None]
        waits = Waits(await parked_for(conn, changes, anything_waits=anything_waits))
        pending = []
        for i, item in enumerate(items):
            if item.paused and item.change is not None:
                # Inbound paused: parked as it is, applied in order when the pause ends.
                results[i] = Applied(
                    Outcome.WAITING, waits_for=pause_reference(item.change.connection_id)
                )
            elif item.erased:
                results[i] = Applied(Outcome.ERASED)
            else:
                pending.append(i)
        while pending:
            applied = await one_pass([items[i] for i in pending], waits)
            for i, result in zip(pending, applied, strict=True):
                results[i] = result
            waiting = [
                i for i in pending if (r := results[i]) is not None and r.outcome is Outcome.WAITING
            ]
            if not waiting:
                return items, results
            again = await resolve_refs(conn, [items[i] for i in waiting])
            if all(
                a.change is None or p.change is None or a.change.refs == p.change.refs
                for a, p in zip(again, (items[i] for i in waiting), strict=True)
            ):
                return items, results  # none of them found its record: they are parked
            for i, item in zip(waiting, again, strict=True):
                items[i] = item
            pending = waiting
            waits = waits.next_pass()
        return items, results

    async def release(self, records: int) -> int:
        """Apply the parked changes of up to ``records`` records whose reference is linked
        now, in one transaction with taking them; those that still wait are parked again
        in their place. Returns how many were taken."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await take_ready(conn, records)
            if not rows:
                return 0
            parsed = [replace(parse_internal(r.source), parked=r.parked) for r in rows]
            results = await self._apply_each_in(conn, parsed)
        self._count(RELEASED, parsed, results)
        return len(rows)

    async def expire(self, wait_seconds: float, limit: int) -> int:
        """Dead-letter (``missing_reference``, naming the reference) up to ``limit`` changes
        parked longer than ``wait_seconds``, oldest first. Their dead letters hold the
        Kafka records as they came, so a redrive applies them once the record is there."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await take_expired(conn, wait_seconds, limit)
            for row in rows:
                await dead_letter(
                    conn,
                    row.source,
                    stage="processor",
                    reason=MISSING_REFERENCE,
                    detail=f"{row.entity_type} {row.external_id} waited for"
                    f" {row.waits_for.describe()}, which connection {row.connection_id} had"
                    f" not sent after {wait_seconds:g} s; redrive it once it has",
                    tenant_id=row.tenant_id,
                    connection_id=row.connection_id,
                    event_id=row.dedup_key,
                )
        for _ in rows:
            metrics.EVENTS.labels(RELEASED, "dead_lettered").inc()
        return len(rows)

    @staticmethod
    async def _settings(
        conn: Conn, parsed: Sequence[Parsed]
    ) -> tuple[dict[uuid.UUID, dict[str, Any]], list[Parsed], Known]:
        """The settings of the connections the changes name, and the changes with those
        that name a connection of another tenant marked: such a change is refused like
        a foreign reference (invariant 11), and logs nothing under either tenant. A change
        of a connection whose provider orders its versions is marked so (rule 1). With
        them, what the same statement learnt of tombstones and waiting changes."""
        ids = list({p.change.connection_id for p in parsed if p.change})
        rows = await connection_owners(conn, ids)
        known = Known(
            frozenset((r["tenant_id"], r["id"]) for r in rows),
            frozenset(r["tenant_id"] for r in rows if r["erasing"]),
            rows[0]["waiting"] if rows else None,
        )
        owner = {r["id"]: r["tenant_id"] for r in rows}
        paused = {r["id"] for r in rows if r["paused_in"]}
        ordered = {r["id"] for r in rows if r["provider"] in VERSIONS_ORDERED}
        checked = []
        for item in parsed:
            change = item.change
            if change is not None and change.connection_id in owner:
                if owner[change.connection_id] != change.tenant_id:
                    item = replace(  # noqa: PLW2901 - the item, checked
                        item,
                        reason="foreign_reference",
                        detail=f"connection {change.connection_id}: no connection of this tenant",
                    )
                elif change.connection_id in paused:
                    item = replace(item, paused=True)  # noqa: PLW2901 - the item, checked
                if change.connection_id in ordered and item.change is not None:
                    ordered_change = replace(item.change, versions_ordered=True)
                    item = replace(item, change=ordered_change)  # noqa: PLW2901 - the item, checked
            checked.append(item)
        return {r["id"]: r["settings"] for r in rows}, checked, known

    @staticmethod
    async def _tombstoned(
        conn: Conn,
        parsed: Sequence[Parsed],
        settings: dict[uuid.UUID, dict[str, Any]],
        erasing: frozenset[uuid.UUID],
    ) -> list[Parsed]:
        """The changes with those a privacy erase's tombstone refuses marked. A paused one
        is left to wait: it is checked when its pause ends and it is released."""
        candidates = [
            p.change
            if p.change is not None
            and not p.reason
            and not p.paused
            and p.change.connection_id in settings
            else None
            for p in parsed
        ]
        hit = await refused(conn, candidates, erasing)
        return [replace(p, erased=True) if i in hit else p for i, p in enumerate(parsed)]

    @staticmethod
    def _problem(item: Parsed, settings: dict[uuid.UUID, dict[str, Any]]) -> tuple[str, str] | None:
        if item.change is None or item.reason:
            return item.reason, item.detail
        if item.change.connection_id not in settings:
            return "unknown_connection", f"connection {item.change.connection_id} not found"
        return None

    @staticmethod
    async def _dead_letter(
        conn: Conn,
        item: Parsed,
        reason: str,
        detail: str,
    ) -> None:
        change = item.change
        await dead_letter(
            conn,
            item.source,
            stage="processor",
            reason=reason,
            detail=detail,
            tenant_id=change.tenant_id if change else None,
            connection_id=change.connection_id if change else None,
            event_id=change.dedup_key if change else None,
        )

    async def _finish(
        self,
        conn: Conn,
        parsed: Sequence[Parsed],
        results: Sequence[Applied | None],
        settings: dict[uuid.UUID, dict[str, Any]],
    ) -> None:
        waiting = [
            ToPark(p.change, p.source, r.waits_for, p.parked)
            for p, r in zip(parsed, results, strict=True)
            if r is not None and r.waits_for is not None and p.change is not None
        ]
        if waiting:
            await park(conn, waiting)
        await record_inbound_skips(
            conn,
            [
                (p.change.connection_id, p.change.dedup_key, "erased")
                for p, r in zip(parsed, results, strict=True)
                if r is not None and r.outcome is Outcome.ERASED and p.change is not None
            ],
        )
        # Only a batch that moved a payment pays for this (issue 17 item 6); the rest
        # check a tuple per change.
        moves = invoice_moves(
            (p.change, r.invoices)
            for p, r in zip(parsed, results, strict=True)
            if r is not None and r.invoices and p.change is not None
        )
        if moves:
            await derive_invoices(conn, moves)
        await self._log(conn, parsed, results, settings)
        if any(r is not None and r.change_id is not None for r in results):
            await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)

    @staticmethod
    async def _log(
        conn: Conn,
        parsed: Sequence[Parsed],
        results: Sequence[Applied | None],
        settings: dict[uuid.UUID, dict[str, Any]],
    ) -> None:
        """One sync_log row per change of a known connection, in one statement per batch,
        with the rule that decided it (migration 0023)."""
        now = datetime.now(UTC)
        rows = [
            (
                p.change.tenant_id,
                p.change.connection_id,
                p.change.entity_type,
                r.entity_id if r else None,
                p.change.external_id,
                r.outcome.value if r else "dead_lettered",
                int((now - p.change.received_at).total_seconds() * 1000)
                if p.change.received_at
                else None,
                r.rule.value if r and r.rule else None,
            )
            for p, r in zip(parsed, results, strict=True)
            if p.change is not None and p.change.connection_id in settings and not p.reason
        ]
        if not rows:
            return
        columns = list(zip(*rows, strict=True))
        await conn.execute(
            """
            INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                                  external_id, outcome, latency_ms, rule)
            SELECT t, c, 'in', e, i, x, o, l, r
              FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[],
                          $6::text[], $7::int[], $8::text[]) AS u(t, c, e, i, x, o, l, r)
            """,
            *[list(col) for col in columns],
        )

    async def _one(
        self, conn: Conn, item: Parsed, settings: dict[uuid.UUID, dict[str, Any]], waits: Waits
    ) -> Applied | None:
        problem = self._problem(item, settings)
        if problem is None:
            change = item.change
            assert change is not None  # noqa: S101 - _problem checked it
            policy = policy_from(settings[change.connection_id], change.entity_type)
            try:
                async with conn.transaction():  # a savepoint: a rejected change undoes alone
                    applied = await apply_change(conn, change, policy, behind=waits.behind(change))
                return waits.note(change, applied)
            except Exception as exc:
                problem = parked_as(exc)
                if problem is None:
                    raise
        await self._dead_letter(conn, item, *problem)
        return None
