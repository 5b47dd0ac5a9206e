"""One push: bring one connection up to a record's latest committed version.

State-based: the record is read from Postgres when the push runs, so a retry always
sends the newest state, and a job whose version the link already has is skipped. After
a successful push the link remembers the state *as the provider reported it back*
(hashed the way the processor hashes what a source tells it), so when the provider
echoes our write in a webhook the processor sees nothing new and emits nothing.

A push costs one read before the provider call (connection, record, link, the links of
the records it references) and one statement after it (the link, then the sync_log row
and the job's finish). No pooled connection is held across the provider call.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast

import asyncpg

from connectors.calls import CallFailedError, attempt
from connectors.http import StaleVersionError
from connectors.limits import full_jitter
from connectors.registry import CAPABILITIES
from connectors.runtime import Clients, ConnectionInfo, Handle
from connectors.spec import REFERENCE_FIELDS, ApiClient, EntityType, RemoteRecord
from crmsync.application.sync.runner import change_id
from crmsync.common.canonical import TABLES, InvalidRecordError, canonical_values, state_hash
from crmsync.common.db import Conn
from crmsync.common.links import entity_ids, linked_to, record_and_link
from crmsync.common.pushes import FINISH_SQL, PAUSED, Job, finish, finish_sql, reschedule
from crmsync.settings.outbound import OutboundSettings
from schemas.errors import DeadLetter, Stop
from schemas.records import ENTITY_MODELS
from services.outbound import metrics
from services.outbound.queue import enqueue

log = logging.getLogger(__name__)
T = TypeVar("T")

# A record whose referenced customer/invoice is not on the target yet waits this long
# for that push (queued first) before trying again, doubling each time (capped by the
# policy's backoff cap): the push of what it references is usually done within a second,
# and ten waits (max_attempts) span about eight minutes before it becomes a dead letter.
DEPENDENCY_WAIT_SECONDS = 1.0
# A push's bookkeeping that PostgreSQL failed as a deadlock's victim is done again at once,
# as its documentation advises for a transaction failed so; a third failure in a row is
# not a passing race, and the job then runs again after its lease.
BOOKKEEPING_ATTEMPTS = 3
# Retryable pauses that are not the push's fault (rate limit, open circuit, re-auth)
# do not count as attempts, but are never shorter than this.
MIN_PAUSE_SECONDS = 0.2


# A push that handed the target's unseen state to the processor looks again after this,
# doubling per attempt like a reference wait: the processor applies a change within a
# second of its produce (bench/README.md), and the attempts bound the wait.
CHANGED_THERE_WAIT_SECONDS = 1.0


class Observe(Protocol):
    """Hands a record read at a target to the processor as that connection's observation
    (crmsync.application.sync.runner.Observer); returns its dedup key once Kafka has it."""

    async def __call__(
        self, info: ConnectionInfo, entity_type: EntityType, record: RemoteRecord
    ) -> str: ...


@dataclass(frozen=True)
class PushPolicy:
    max_attempts: int = 10
    backoff_base_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    max_rate_wait_seconds: float = 2.0

    @classmethod
    def from_settings(cls, settings: OutboundSettings) -> PushPolicy:
        return cls(
            max_attempts=settings.outbound_max_attempts,
            backoff_cap_seconds=settings.outbound_backoff_cap_seconds,
            max_rate_wait_seconds=settings.outbound_max_rate_wait_seconds,
        )


class PushFailedError(DeadLetter):
    """The provider call of a push failed; ``failure`` says whether a retry can help."""

    def __init__(self, operation: str, failure: CallFailedError) -> None:
        super().__init__(failure.reason, failure.detail, message=f"{operation}: {failure}")
        self.operation = operation
        self.failure = failure
        self.written = failure.written


class ChangedThereError(DeadLetter):
    """The target's own edit, handed to the processor, was never taken in (applied,
    parked or refused) within the bounded wait: something downstream is stuck."""

    def __init__(self, detail: str) -> None:
        super().__init__("changed_there", detail)


class LinkTakenError(DeadLetter):
    """The target's record this push wrote is linked to another canonical record already:
    the target's webhook of it reached the processor before this push's bookkeeping and
    was not recognised as our own write (processor.apply.PUSHED_MATCH_ON), so it made a
    record of its own. Parked once, for an operator to merge the two: retrying cannot
    help (the link's key stays taken), and before it was parked it failed "unexpectedly"
    on every lease, for ever (the catalogue convergence case, seed 13)."""

    def __init__(self, detail: str) -> None:
        super().__init__("link_taken", detail)


class MissingReferenceError(DeadLetter):
    """A record it names never reached the target within the bounded wait."""

    def __init__(self, detail: str) -> None:
        super().__init__("missing_reference", detail)


def holds(info: ConnectionInfo, entity_type: str) -> bool:
    """Whether the target's API can hold records of ``entity_type`` at all (ApiSpec)."""
    try:
        api = info.connector().api
    except (KeyError, ValueError):
        return False
    return api is not None and entity_type in api.entity_types


# Retryable failures that are not the push's fault: the provider asked us to slow down,
# its circuit is open, or the connection waits for re-authorisation.
# How long a push held by a pause without an end waits before it looks again (a resume
# wakes it at once: this is the safety net, not the way it resumes).
PAUSE_RECHECK_SECONDS = 300.0
_NOT_THE_PUSH_S_FAULT = frozenset({"rate_limited", "circuit_open", "needs_reauth"})


@dataclass(frozen=True)
class Reschedule:
    """Try the push again after ``seconds``; ``count_attempt`` False when the failure was
    not the push's fault (it then never runs out of attempts waiting)."""

    seconds: float
    count_attempt: bool
    call: CallFailedError


@dataclass(frozen=True)
class Park:
    """Give the push up as a dead letter with ``reason``."""

    reason: str
    detail: str
    call: CallFailedError | None = None


def action_for(exc: DeadLetter, *, attempts: int, policy: PushPolicy) -> Reschedule | Park:
    """What a failed push does next, after ``attempts`` failed attempts before this one.

    A failed provider call says whether a retry can help; any other DeadLetter (no
    credentials, a record the provider's terms cannot express) cannot be helped by one.
    """
    call = exc.failure if isinstance(exc, PushFailedError) else exc
    if not isinstance(call, CallFailedError):
        return Park(exc.reason, exc.detail)
    gone = isinstance(exc, PushFailedError) and _deleted_there(exc)
    if not call.retryable and not gone:
        return Park(call.reason, str(call), call)
    if call.reason in _NOT_THE_PUSH_S_FAULT:
        # Wait as long as asked, without using up an attempt.
        pause = max(MIN_PAUSE_SECONDS, call.retry_after or MIN_PAUSE_SECONDS)
        return Reschedule(pause, count_attempt=False, call=call)
    if attempts + 1 >= policy.max_attempts:
        return Park(call.reason if gone else "retries_exhausted", str(call), call)
    delay = call.retry_after
    if delay is None:
        delay = full_jitter(attempts, policy.backoff_base_seconds, policy.backoff_cap_seconds)
    return Reschedule(max(delay, MIN_PAUSE_SECONDS), count_attempt=True, call=call)


def _deleted_there(exc: PushFailedError) -> bool:
    """An update the target answered "not found": its user most likely deleted the record
    there while our push was on its way, and that delete's webhook has not reached us yet.
    The push waits for it, counting attempts; once the delete is applied the push finds the
    record deleted (and a delete that meets "not found" is done). One that stays live here
    is a not_found dead letter after the attempts."""
    return exc.operation == "update" and exc.failure.reason == "not_found"


def idempotency_key(connection_id: uuid.UUID, entity_id: uuid.UUID) -> str:
    """Stable per record and connection: a create retried after a crash is the same create."""
    return f"crmsync-{connection_id}-{entity_id}"


@dataclass(frozen=True)
class _Read:
    """What a push reads before calling the provider, from one statement."""

    found: bool  # the record exists (a deleted one is a tombstone, still found)
    data: dict[str, Any]
    version: int
    deleted: bool
    external_id: str | None  # the link's, None when not linked yet
    pushed_version: int | None  # the link's last_pushed_version
    ref_links: dict[str, str]  # reference field → the target's id of the record it names
    # The link's last state heard from the target (its answer to our last write, or its
    # last webhook or reconciled page) and the newest of its times: what a look compares.
    seen: dict[str, Any] | None = None
    seen_at: datetime | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> _Read:
        return cls(
            found=row["record_found"],
            data=dict(row["record_data"] or {}),
            version=row["record_version"] or 0,
            deleted=row["record_deleted"],
            external_id=row["link_external_id"] if row["linked"] else None,
            pushed_version=row["link_pushed_version"],
            # A kind's read has the columns of the references it can hold (_ref_fields).
            ref_links={
                f: ref for f in REFERENCE_FIELDS if (ref := row.get(f"ref_{f}")) is not None
            },
            seen=dict(row["link_snapshot"]) if row["link_snapshot"] is not None else None,
            seen_at=row["link_remote_updated_at"],
        )


# The connection's columns keep their names (ConnectionInfo.from_row); the rest are prefixed.
_CONNECTION_COLUMNS = ", ".join(f"c.{name}" for name in ConnectionInfo.__dataclass_fields__)
# Only canonical UUID text is cast in SQL (a failed cast would fail the whole read); another
# spelling of a reference is looked up again in Python, as if it were not linked.
_UUID_TEXT = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def _ref_fields(entity_type: str) -> tuple[str, ...]:
    """The reference fields a record of ``entity_type`` can hold (its canonical model's,
    which forbids others): a customer names no record, a payment its invoice and customer.
    Outbound's pool plans every statement for its arguments (crmsync.common.db), and the
    lookups of fields a kind cannot hold cost a customer's read half its planning and half
    its execution (0.52 → 0.27 ms and 0.13 → 0.06 ms, bench/README.md, "Ninth round")."""
    model_fields = ENTITY_MODELS[entity_type].model_fields
    return tuple(f for f in REFERENCE_FIELDS if f in model_fields)


def _ref_columns(fields: tuple[str, ...]) -> str:
    """Per reference field, the link of the record it names: one lookup by the link's full
    key (entity id, type, connection), nothing at all when the record has no such field.
    Only a record of the connection's tenant counts: a link to another's (the old bug of
    issue 15 wrote some) sends the push to _missing_refs, which parks it."""
    return "".join(
        f""",
               (SELECT rl.external_id FROM entity_links rl
                 WHERE rl.entity_id = CASE WHEN r.data ->> '{field}' ~* '{_UUID_TEXT}'
                                           THEN (r.data ->> '{field}')::uuid END
                   AND rl.entity_type = '{REFERENCE_FIELDS[field]}' AND rl.connection_id = c.id
                   AND rl.tenant_id = c.tenant_id
                   AND EXISTS (SELECT 1 FROM {TABLES[REFERENCE_FIELDS[field]]} rr
                                WHERE rr.id = rl.entity_id AND rr.tenant_id = c.tenant_id))
                   AS ref_{field}"""  # noqa: S608 - our constants
        for field in fields
    )


def _read_sql(entity_type: str) -> str:
    """One round trip for everything a push needs before the provider call: the connection,
    the record, its link to the connection, and the links of the records it references
    ($1 connection, $2 entity id, $3 entity type, $4 the job's tenant). The record is found
    only when the connection and the record are both the job's tenant's."""
    table = TABLES[entity_type]
    return f"""
        SELECT {_CONNECTION_COLUMNS},
               -- An outbound pause in force: NULL none, -1 until resumed, else its end
               -- (unix seconds) when every pause in force has one.
               (SELECT CASE WHEN count(*) = 0 THEN NULL
                            WHEN bool_or(p.ends_at IS NULL) THEN -1
                            ELSE extract(epoch FROM max(p.ends_at))::float8 END
                  FROM pauses p
                 WHERE p.tenant_id = c.tenant_id AND p.outbound
                   AND (p.connection_id IS NULL OR p.connection_id = c.id)
                   AND p.starts_at <= now() AND (p.ends_at IS NULL OR p.ends_at > now()))
                 AS paused_until,
               r.id IS NOT NULL AS record_found, r.data AS record_data,
               r.version AS record_version, r.deleted_at IS NOT NULL AS record_deleted,
               l.id IS NOT NULL AS linked, l.external_id AS link_external_id,
               l.last_pushed_version AS link_pushed_version,
               l.last_seen_snapshot AS link_snapshot,
               l.remote_updated_at AS link_remote_updated_at{_ref_columns(_ref_fields(entity_type))}
          FROM connections c
          LEFT JOIN {table} r ON r.id = $2 AND r.tenant_id = $4 AND c.tenant_id = $4
          LEFT JOIN entity_links l
                 ON l.entity_id = $2 AND l.entity_type = $3 AND l.connection_id = c.id
                AND l.tenant_id = c.tenant_id
         WHERE c.id = $1
    """  # noqa: S608 - fixed table names and constants


def _refs_from(wanted: dict[str, uuid.UUID], known: dict[str, str]) -> dict[str, str] | None:
    """The target's id for every wanted reference; None when one is not ``known``."""
    if not wanted.keys() <= known.keys():
        return None
    return {field_name: known[field_name] for field_name in wanted}


_READS = {entity_type: _read_sql(entity_type) for entity_type in TABLES}

# After a successful push, one statement (_BOOKKEEP_SQL): link the record to the
# provider's id and remember the pushed state, then log the push and finish the job. A
# crash or error leaves either all of it or none (the job then runs again after its lease).
# The link's row is taken first: the processor locks a record's links (its batch's load)
# before it queues a push of that record (an echo that shows the system fell behind), and
# rows taken in the other order deadlocked with it. PostgreSQL runs a CTE nobody reads
# last, which took the job row first; so the finish reads the link's CTE, which makes the
# link's upsert run before the job's row is scanned (crmsync.common.pushes.finish_sql).
_LINK_COLUMNS = """
    INSERT INTO entity_links AS l (tenant_id, connection_id, entity_type, entity_id,
                                   external_id, last_pushed_hash, last_pushed_version,
                                   last_seen_hash, last_seen_snapshot, remote_version,
                                   remote_updated_at, pushed_updated_at, pushes)"""
_LINK_CONFLICT = """
    ON CONFLICT (connection_id, entity_type, entity_id) DO UPDATE
       SET external_id = EXCLUDED.external_id,
           last_pushed_hash = coalesce(EXCLUDED.last_pushed_hash, l.last_pushed_hash),
           last_pushed_version = EXCLUDED.last_pushed_version,
           last_seen_hash = coalesce(EXCLUDED.last_seen_hash, l.last_seen_hash),
           last_seen_snapshot = coalesce(EXCLUDED.last_seen_snapshot, l.last_seen_snapshot),
           remote_version = coalesce(EXCLUDED.remote_version, l.remote_version),
           remote_updated_at = greatest(EXCLUDED.remote_updated_at, l.remote_updated_at),
           pushed_updated_at = coalesce(EXCLUDED.pushed_updated_at, l.pushed_updated_at),
           pushes = link_pushes_after(
               l.pushes, EXCLUDED.last_pushed_hash, EXCLUDED.pushed_updated_at),
           updated_at = now()"""
# The link alone: $1 tenant, $2 connection, $3 entity type, $4 entity id, $5 external id,
# $6 pushed (and seen) hash, $7 pushed version, $8 snapshot, $9 remote version, $10 remote
# updated at (also the updated-at of our write: what its echo carries, migration 0020);
# the coalesce/greatest rules keep what the provider did not report this time. The write
# joins the link's last few (pushes, migration 0022): a read-back of it that reaches the
# processor after a later write is still known for ours.
# Also what a failed push that wrote something first leaves (no log row, no finish).
_LINK_SQL = f"""{_LINK_COLUMNS}
    VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8, $9, $10, $10,
            link_pushes_after(NULL, $6, $10)){_LINK_CONFLICT}
"""
# entity_links' key on a connection's id for a record (migration 0003): taken by another
# record, the push's link cannot be written (LinkTakenError).
_EXTERNAL_ID_KEY = "entity_links_connection_id_entity_type_external_id_key"
# The whole bookkeeping of a push that reached the target, in one statement (atomic on its
# own, so no BEGIN and COMMIT: one round trip where a transaction of two statements took
# four): the link (_LINK_SQL's), the push's log row and the job's finish. The finish reads
# the link's CTE (finish_sql(after=...)), so the link's row is taken before the job's, in
# the processor's order. $1 job id, $2 job version (FINISH_SQL), $3 tenant, $4 connection,
# $5 entity type, $6 entity id, $7 external id, $8 latency, $9 the outcome ('pushed', or
# 'not_updatable' for a change the target takes no update of), $10 why, for an outcome
# that is not a push; the link's $11 pushed (and seen) hash, $12 pushed version,
# $13 snapshot, $14 remote version, $15 remote updated at (as in _LINK_SQL).
_BOOKKEEP_SQL = f"""
    WITH linked AS ({_LINK_COLUMNS}
        VALUES ($3, $4, $5, $6, $7, $11, $12, $11, $13, $14, $15, $15,
                link_pushes_after(NULL, $11, $15)){_LINK_CONFLICT}
        RETURNING l.id
    ), logged AS (
        INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                              external_id, outcome, latency_ms, error)
        VALUES ($3, $4, 'out', $5, $6, $7, $9, $8, $10)
    ), {finish_sql(after="linked")}
"""  # noqa: S608 - constant SQL
# A version the target cannot hold yet (ApiSpec.holds_back), never linked: logged with
# why, the job finished. $1 job id, $2 job version (FINISH_SQL), $3 tenant, $4 connection,
# $5 entity type, $6 entity id, $7 why.
_HELD_SQL = f"""
    WITH logged AS (
        INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                              outcome, error)
        VALUES ($3, $4, 'out', $5, $6, 'held', $7)
    ), {FINISH_SQL}
"""  # noqa: S608 - constant SQL

# Giving a push up, one statement: park it as a dead letter and finish the job. A version
# queued during the push is then due at once, as after a success (it may not fail the same
# way, and its lease would otherwise hold it back). $1 job id, $2 job version (FINISH_SQL).
_DEAD_SQL = f"""
    WITH dead AS (
        INSERT INTO dead_letters (id, stage, reason, detail, tenant_id, connection_id, payload)
        VALUES ($3, 'outbound', $4, $5, $6, $7, $8)
    ), {FINISH_SQL}
"""  # noqa: S608 - constant SQL


# A push that found the target edited since we last heard from it: the sync log says so
# (the push goes on after the merge). $1 tenant, $2 connection, $3 entity type, $4 entity
# id, $5 external id, $6 what changed and where it went.
_CHANGED_THERE_SQL = """
    INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                          external_id, outcome, error)
    VALUES ($1, $2, 'out', $3, $4, $5, 'changed_there', $6)
"""
# Whether the processor took in a change of this connection ($1) with dedup key $2:
# 'processed' (applied, or decided stale, echo, no-op), 'parked' (waiting for a record it
# names), NULL (not yet, or refused as a dead letter).
_TAKEN_SQL = """
    SELECT CASE
        WHEN EXISTS (SELECT 1 FROM processed_events
                      WHERE connection_id = $1 AND provider_event_id = $2) THEN 'processed'
        WHEN EXISTS (SELECT 1 FROM waiting_changes
                      WHERE connection_id = $1 AND dedup_key = $2) THEN 'parked'
    END
"""


# The processor's dead letter of a change of this connection ($1) with dedup key $2, if
# it refused one: its payload is the change message as handed over (change_message), whose
# event id is that key. Looked for only when the change is neither processed nor parked.
_REFUSED_SQL = """
    SELECT id, reason FROM dead_letters
     WHERE connection_id = $1 AND stage = 'processor'
       AND position(convert_to($2, 'UTF8') IN payload) > 0
     ORDER BY created_at LIMIT 1
"""


def _condition(expected: str | None) -> dict[str, str]:
    """The update's keyword for a conditional write; none at all for an unconditional one
    (a client that has no conditional write takes no such keyword)."""
    return {} if expected is None else {"expected_version": expected}


def _unseen(
    entity_type: str,
    current: RemoteRecord,
    read: _Read,
    *,
    refs: Mapping[str, str] | None = None,
    own: frozenset[str] = frozenset(),
) -> str | None:
    """What the target holds that its link has not heard (the fields, or "deleted"), or
    None: nothing, or nothing the merge could take. Compared by value with the link's
    last state heard (its snapshot), not by time: clocks as coarse as a second (QuickBooks,
    Stripe) cannot order an edit against our write within the same second. A state older
    than one heard already would be decided stale, so it is not handed over; nor, with no
    snapshot (a link from before one was kept), is anything.

    ``refs``: per reference field our write would set, the canonical id of the record the
    target names there now (``_target_refs``), compared with the one last heard: a user who
    moves an invoice to another customer changes nothing else. ``own``: fields the target
    sets by its own rules and no write of ours sets (ApiSpec.own_fields), left out: our
    write cannot overwrite them, and Stripe's own moves (a PaymentIntent made for a payment
    from elsewhere stays unconfirmed there) are no user's edit to hand to the merge."""
    seen = read.seen
    if seen is None or (read.seen_at is not None and current.updated_at < read.seen_at):
        return None
    if current.deleted:
        return "deleted"
    try:
        values = canonical_values(entity_type, dict(current.data))
    except DeadLetter:
        return None  # not a state the processor could take either: written over, as before
    moved = [
        k
        for k, v in values.items()
        if k not in REFERENCE_FIELDS and k not in own and seen.get(k) != v
    ]
    moved += [f for f, there in (refs or {}).items() if there != seen.get(f)]
    return ", ".join(sorted(moved)) or None


async def _bookkeep(conn: Conn, bookkept: tuple[Any, ...]) -> bool:
    """One try of a push's bookkeeping (_BOOKKEEP_SQL). True when the job was re-armed for a
    newer version."""
    return await conn.fetchval(_BOOKKEEP_SQL, *bookkept) is not None


def _retry_log(job: Job, info: ConnectionInfo) -> dict[str, Any]:
    """The fields of a push's retry log line."""
    return {
        "tenant": str(job.tenant_id),
        "connection": str(job.connection_id),
        "provider": info.provider,
        "entity_type": job.entity_type,
        "entity_id": str(job.entity_id),
        "attempt": job.attempts + 1,
    }


async def _link_taken(
    conn: Conn,
    info: ConnectionInfo,
    job: Job,
    external_id: str,
    failure: DeadLetter | None = None,
) -> LinkTakenError:
    """The dead letter of a push whose write (``external_id``) another record's link holds
    (entity_links' key, _EXTERNAL_ID_KEY); ``failure``: what failed after that write."""
    holder = await linked_to(conn, info.id, job.entity_type, external_id)
    after = f"; the push then failed: {failure}" if failure is not None else ""
    return LinkTakenError(
        f"{job.entity_type} {job.entity_id}: {info.provider}'s {external_id}, which this"
        f" push wrote, is linked to {job.entity_type} {holder} already (made from that"
        f" record's webhook before this push was linked){after}; merge the two (delete one"
        " and link the other), then redrive"
    )


def _not_updatable(provider: str, entity_type: EntityType) -> str | None:
    """Why ``provider`` takes no update of ``entity_type`` (its capabilities' ``update``
    cell is ✗), or None when it takes some."""
    row = CAPABILITIES.get(provider, {}).get(entity_type)
    if row is None or row.update.support != "no":
        return None
    return f"{provider} {entity_type} update: {row.update.why}"


def _reported(remote: RemoteRecord, pushed: dict[str, Any]) -> dict[str, Any]:
    """The provider's record in canonical terms, its references as we pushed them (the
    canonical ids, which the provider's own ids stand for)."""
    reported = dict(remote.data)
    for field_name in remote.refs:
        if field_name in pushed:
            reported[field_name] = pushed[field_name]
    return reported


class Pusher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clients: Clients,
        policy: PushPolicy,
        *,
        observe: Observe | None = None,
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.policy = policy
        # None: updates are written without a look first (ApiSpec.update_precondition is
        # then not honoured; the service always passes one).
        self.observe = observe

    async def run(self, job: Job) -> bool:
        """Push ``job``. True when its row is still queued and may be due before the worker
        expects: rescheduled, or re-armed because a newer version came meanwhile."""
        row = await self.pool.fetchrow(
            _READS[job.entity_type],
            job.connection_id,
            job.entity_id,
            job.entity_type,
            job.tenant_id,
        )
        if row is None:  # the connection was deleted; its jobs went with it
            return False
        info = ConnectionInfo.from_row(row)
        provider = info.provider
        if row["paused_until"] is not None:
            return await self._paused(job, info, row["paused_until"])
        handle = await self._handle(job, info)
        if isinstance(handle, bool):  # no client: the job was settled
            return handle
        started = time.perf_counter()
        try:
            operation, queued = await self._push(job, info, handle, _Read.from_row(row))
        except DeadLetter as exc:
            return await self._failed(job, info, exc)
        except asyncpg.UniqueViolationError as exc:
            # A unique key no rule here foresees (entity_links' external-id key is
            # LinkTakenError): it fails the same way on every try, so each is an attempt.
            return await self._key_taken(job, info, exc)
        finally:
            metrics.PUSH_SECONDS.labels(provider).observe(time.perf_counter() - started)
        if operation not in ("skipped", "waiting"):
            metrics.PUSHES.labels(provider, operation, "succeeded", "2xx").inc()
            lag = (datetime.now(UTC) - job.committed_at).total_seconds()
            metrics.COMMITTED_TO_PUSHED_SECONDS.labels(provider).observe(max(0.0, lag))
        return queued

    async def _failed(self, job: Job, info: ConnectionInfo, exc: DeadLetter) -> bool:
        """Settle a push that failed with ``exc``; True when its row is still queued."""
        if not isinstance(exc, PushFailedError):
            return await self._settle(job, info, exc)
        error = exc.failure.error
        metrics.PUSHES.labels(
            info.provider, exc.operation, "failed", error.status_class if error else "none"
        ).inc()
        await self._settle(job, info, exc)
        return True

    async def _handle(self, job: Job, info: ConnectionInfo) -> Handle | bool:
        """The connection's client; without one, the job settled (whether it is queued)."""
        try:
            return await self.clients.get(info)
        except DeadLetter as exc:  # no usable credentials
            return await self._settle(job, info, exc)
        except Stop as exc:
            # Credentials no key of CRMSYNC_MASTER_KEYS opens (a CryptoError). Only this
            # connection is affected: its pushes are parked, redrivable once the key is
            # back, while every other connection's go on.
            return await self._dead(
                job,
                info,
                "credentials_unreadable",
                f"connection {info.id}: {exc}; add its key to CRMSYNC_MASTER_KEYS (or store"
                " the credentials again), then redrive",
                None,
            )

    async def _paused(self, job: Job, info: ConnectionInfo, until: float) -> bool:
        """An outbound pause or freeze window holds the push: it waits, without counting an
        attempt, until the pause ends (``until``: unix seconds, or -1 until resumed, then it
        looks again every PAUSE_RECHECK_SECONDS). Ending a pause early (resume, deleting a
        window in force) makes the held pushes due at once (``pushes.wake_paused``); a
        window that starts while the push waits is found when it is next due."""
        metrics.SKIPPED.labels(info.provider, "paused").inc()
        wait = PAUSE_RECHECK_SECONDS if until < 0 else max(0.0, until - time.time())
        await reschedule(self.pool, job, wait, PAUSED, count_attempt=False)
        return True

    async def _push(
        self,
        job: Job,
        info: ConnectionInfo,
        handle: Handle,
        read: _Read,
        looked: RemoteRecord | None = None,
    ) -> tuple[str, bool]:
        """The operation made (or skipped, waiting) and whether the job's row is still queued.
        ``looked``: the target's state already read by this push (see ``_look``)."""
        if not read.found:
            return "skipped", await finish(self.pool, job)
        if read.external_id is not None and (read.pushed_version or 0) >= read.version:
            metrics.SKIPPED.labels(info.provider, "already_pushed").inc()
            return "skipped", await finish(self.pool, job)
        entity_type = cast(EntityType, job.entity_type)
        if not info.syncs("out", entity_type):
            # Queued by a redrive, or before the settings changed (or, before issue 17, as a
            # record another one references): the target does not take this kind. Skipped
            # by rule, as the router would have (the ledger counts it "settings").
            metrics.SKIPPED.labels(info.provider, "not_synced").inc()
            return "skipped", await finish(self.pool, job)
        settled = (
            await self._delete(job, info, handle, read.external_id, read.version)
            if read.deleted
            else await self._not_sent(job, info, handle, read)
        )
        if settled is not None:
            return settled
        return await self._write(job, info, handle, read, looked)

    async def _write(
        self,
        job: Job,
        info: ConnectionInfo,
        handle: Handle,
        read: _Read,
        looked: RemoteRecord | None,
    ) -> tuple[str, bool]:
        """Create or update the record at the target (what ``_push`` leaves to do)."""
        entity_type = cast(EntityType, job.entity_type)
        data = read.data
        refs = await self._refs(job, info, data, read.ref_links)
        if refs is None:  # rescheduled behind the records it references
            return "waiting", True
        expected: str | None = None
        if read.external_id is not None and self._looks(handle):
            if looked is None:
                seen = await self._look(job, info, handle, read)
                if isinstance(seen, tuple):  # handed to the merge, or merged meanwhile
                    return seen
                looked = seen
            expected = looked.version if self._conditional(handle) else None
        body = {k: v for k, v in data.items() if k not in REFERENCE_FIELDS}
        try:
            if read.external_id is None:
                key = idempotency_key(info.id, job.entity_id)
                operation = "create"
                remote = await self._call(
                    handle, operation, lambda c: c.create(entity_type, body, refs, key)
                )
            else:
                operation = "update"
                linked = read.external_id
                remote = await self._call(
                    handle,
                    operation,
                    lambda c: c.update(entity_type, linked, body, refs, **_condition(expected)),
                )
        except PushFailedError as exc:
            if expected is not None and isinstance(exc.failure.error, StaleVersionError):
                # Edited there between our look and our write: nothing was written; the
                # next run looks again and hands that edit to the merge.
                await reschedule(
                    self.pool, job, 0.0, f"changed there while written: {exc}",
                    count_attempt=True,
                )  # fmt: skip
                metrics.RETRIES.labels(info.provider, "changed_there").inc()
                return "waiting", True
            if exc.written is not None:
                await self._link_written(info, job, read, exc.written, data, failure=exc)
            raise
        except DeadLetter as exc:
            # The provider took a write before a later step failed (or was refused by its
            # rules): link what it holds now, so a retry or redrive updates it and never
            # creates a second; the version is not pushed, the rest is not taken for done.
            if exc.written is not None:
                await self._link_written(info, job, read, exc.written, data, failure=exc)
            raise
        rearmed = await self._remember(
            info=info,
            job=job,
            external_id=remote.external_id,
            version=read.version,
            remote=remote,
            pushed=data,
        )
        return operation, rearmed

    def _looks(self, handle: Handle) -> bool:
        """Whether an update to this target reads it first (ApiSpec.update_precondition)."""
        api = handle.connector.api
        return self.observe is not None and api is not None and api.update_precondition != "none"

    @staticmethod
    def _conditional(handle: Handle) -> bool:
        api = handle.connector.api
        return api is not None and api.update_precondition == "version"

    async def _look(
        self, job: Job, info: ConnectionInfo, handle: Handle, read: _Read
    ) -> RemoteRecord | tuple[str, bool]:
        """Read the target before updating it (issue 17). The record as it is there, when
        it holds nothing we have not seen: write it. Otherwise its state is the target's
        own edit, made while our push was on its way (its webhook, if any, not applied
        yet): written over, it would be lost everywhere. It goes to the processor as an
        observation of the target, the way a reconciliation hands a listed record over
        (dedup, merge, conflict policy, echo rules, ledger), and this push waits for the
        merged record, which it then pushes: ("waiting", True), its row rescheduled and the
        sync log saying ``changed_there``.

        Handed over before the row is touched: a push that dies between the read and the
        hand-off has written nothing and runs again after its lease; one that dies after
        it hands the same state again, which the processor drops as a duplicate (its key
        is the state's). Nothing is written to the target until the processor has taken
        the state in, so nothing is pushed twice and nothing is lost."""
        assert self.observe is not None  # noqa: S101 - _looks said so
        entity_type = cast(EntityType, job.entity_type)
        linked = cast(str, read.external_id)
        current = await self._call(handle, "update", lambda c: c.fetch(entity_type, linked))
        api = handle.connector.api
        own = api.own_fields.get(entity_type, frozenset()) if api is not None else frozenset()
        refs = await self._target_refs(info, current, read)
        unseen = _unseen(entity_type, current, read, refs=refs, own=own)
        if unseen is None:
            return current
        key = change_id(entity_type, current)
        taken = await self.pool.fetchval(_TAKEN_SQL, info.id, key)
        if taken == "processed":
            # The merge has decided on this state (merged it, or kept ours): the record as
            # it now stands is what the target gets, written at the version just read.
            row = await self.pool.fetchrow(
                _READS[job.entity_type], job.connection_id, job.entity_id, job.entity_type,
                job.tenant_id,
            )  # fmt: skip
            if row is None:
                return "skipped", False
            return await self._push(job, info, handle, _Read.from_row(row), looked=current)
        refused = (
            None if taken is not None else await self.pool.fetchrow(_REFUSED_SQL, info.id, key)
        )
        if refused is not None:
            # The processor took the state in and refused it (a reference that never came,
            # a merge it must not store): its dead letter holds the state with the reason,
            # for an operator to fix and redrive. Handed over again it would only be refused
            # again, once per attempt (issue 17: recorded once, not retried for ever); the
            # record as it stands is written, at the version just read, like a state the
            # merge decided against, and the sync log says over what.
            why = (
                f"changed there ({unseen}); the processor refused that state as"
                f" {refused['reason']} (dead letter {refused['id']}): written over with the"
                " record as it stands"
            )
            await self.pool.execute(
                _CHANGED_THERE_SQL, job.tenant_id, info.id, job.entity_type, job.entity_id,
                linked, why,
            )  # fmt: skip
            return current
        if job.attempts + 1 >= self.policy.max_attempts:
            raise ChangedThereError(
                f"{job.entity_type} {job.entity_id}: the target's own edit ({unseen}), handed"
                f" to the processor as event {key}, was not taken in after"
                f" {job.attempts + 1} waits; see the processor's dead letters, then redrive"
            )
        if taken is None:  # not handed yet, or not taken in yet (parked: handed already)
            await self.observe(info, entity_type, current)
        why = f"changed there ({unseen}); handed to the merge as {key}, merged record next"
        delay = min(CHANGED_THERE_WAIT_SECONDS * 2**job.attempts, self.policy.backoff_cap_seconds)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _CHANGED_THERE_SQL, job.tenant_id, info.id, job.entity_type, job.entity_id,
                linked, why,
            )  # fmt: skip
            await reschedule(conn, job, delay, why, count_attempt=True)
        metrics.SKIPPED.labels(info.provider, "changed_there").inc()
        return "waiting", True

    async def _target_refs(
        self, info: ConnectionInfo, current: RemoteRecord, read: _Read
    ) -> dict[str, str]:
        """For each reference our write would set (the record names it, the target holds
        its kind) and the target reports now, the canonical id of the record it names
        there, as the link's snapshot spells it, or ``unlinked <id>`` for one the
        connection has not told us of (never equal to one heard). A reference the target
        leaves out of its read is not compared: an API may answer a write with more than
        it reads back. One lookup, none for a record without references."""
        keys = {
            f: (info.id, kind, current.refs[f])
            for f, kind in REFERENCE_FIELDS.items()
            if read.data.get(f) and current.refs.get(f) and holds(info, kind)
        }
        found = await entity_ids(self.pool, keys.values()) if keys else {}
        return {
            f: str(found[key]) if key in found else f"unlinked {key[2]}" for f, key in keys.items()
        }

    async def _not_sent(
        self, job: Job, info: ConnectionInfo, handle: Handle, read: _Read
    ) -> tuple[str, bool] | None:
        """("skipped", queued) when this version is not for the target to take: one it
        cannot hold yet, or an update of a kind it never updates; None: push it."""
        entity_type = cast(EntityType, job.entity_type)
        data = read.data
        api = handle.connector.api
        held = api.holds_back(entity_type, data) if api and api.holds_back else None
        if held is not None:
            # Not yet something the target holds (a pending payment, to Xero): nothing is
            # sent and nothing parked; the version that it can hold is pushed when it comes.
            metrics.SKIPPED.labels(info.provider, "held").inc()
            if read.external_id is not None:
                rearmed = await self._remember(
                    info=info, job=job, external_id=read.external_id, version=read.version,
                    remote=None, pushed={}, outcome="held", why=held,
                )  # fmt: skip
                return "skipped", rearmed
            queued = await self.pool.fetchval(
                _HELD_SQL, job.id, job.version, job.tenant_id, info.id, job.entity_type,
                job.entity_id, held,
            )  # fmt: skip
            return "skipped", queued is not None
        if read.external_id is not None:
            cannot = _not_updatable(info.provider, entity_type)
            if cannot is not None:
                # The provider takes no update of this kind (a Xero payment): sending it
                # would be refused every time. Logged once with the rule; the target keeps
                # what it holds, so its link's snapshot stays as it was.
                metrics.SKIPPED.labels(info.provider, "not_updatable").inc()
                rearmed = await self._remember(
                    info=info, job=job, external_id=read.external_id, version=read.version,
                    remote=None, pushed={}, outcome="not_updatable", why=cannot,
                )  # fmt: skip
                return "skipped", rearmed
        return None

    async def _link_written(
        self,
        info: ConnectionInfo,
        job: Job,
        read: _Read,
        written: object,
        pushed: dict[str, Any],
        *,
        failure: DeadLetter,
    ) -> None:
        """Link the record to what a failed push wrote, in one statement that neither logs
        nor finishes the job (it is rescheduled or parked next). A write another record's
        link holds is a LinkTakenError instead of ``failure``: a retry would find the key
        taken again (and the write itself be made again), every lease, for ever."""
        remote = written if isinstance(written, RemoteRecord) else None
        external_id = remote.external_id if remote is not None else str(written)
        if remote is None and read.external_id == external_id:
            return  # an update: the link already names it
        values = None
        if remote is not None:
            with contextlib.suppress(DeadLetter):  # unreadable: linked without a state
                values = canonical_values(job.entity_type, _reported(remote, pushed))
        async with self.pool.acquire() as conn:
            try:
                await conn.execute(
                    _LINK_SQL,
                    job.tenant_id,
                    info.id,
                    job.entity_type,
                    job.entity_id,
                    external_id,
                    state_hash(values) if values is not None else None,
                    read.pushed_version,
                    values,
                    remote.version if remote else None,
                    remote.updated_at if remote else None,
                )
                return
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _EXTERNAL_ID_KEY:
                    raise
                taken = await _link_taken(conn, info, job, external_id, failure)
        raise taken

    async def _delete(
        self,
        job: Job,
        info: ConnectionInfo,
        handle: Handle,
        external_id: str | None,
        version: int,
    ) -> tuple[str, bool]:
        if external_id is None:
            metrics.SKIPPED.labels(info.provider, "not_linked_delete").inc()
            return "skipped", await finish(self.pool, job)
        entity_type = cast(EntityType, job.entity_type)
        api = handle.connector.api
        if api is None or entity_type not in api.deletable:
            metrics.SKIPPED.labels(info.provider, "unsupported").inc()
        else:
            try:
                await self._call(handle, "delete", lambda c: c.delete(entity_type, external_id))
            except PushFailedError as exc:
                if exc.failure.reason != "not_found":  # already gone is what we wanted
                    raise
        rearmed = await self._remember(
            info=info, job=job, external_id=external_id, version=version, remote=None, pushed={}
        )
        return "delete", rearmed

    async def _call(
        self, handle: Handle, operation: str, call: Callable[[ApiClient], Awaitable[T]]
    ) -> T:
        try:
            return await attempt(handle, call, max_wait_seconds=self.policy.max_rate_wait_seconds)
        except CallFailedError as exc:
            raise PushFailedError(operation, exc) from None

    async def _refs(
        self,
        job: Job,
        info: ConnectionInfo,
        data: dict[str, Any],
        known: dict[str, str],
    ) -> dict[str, str] | None:
        """The target's ids of the records this one references; None (and the missing
        ones queued first) when one is not on the target yet. A reference to a kind the
        target cannot hold (a job, for Xero) is not sent, so not waited for. ``known``: the
        links the push's read found; the database is asked again only when one is missing."""
        wanted = {
            f: uuid.UUID(str(data[f]))
            for f, kind in REFERENCE_FIELDS.items()
            if data.get(f) and holds(info, kind)
        }
        if not wanted:
            return {}
        refs = _refs_from(wanted, known)
        if refs is not None:
            return refs
        async with self.pool.acquire() as conn:
            return await self._missing_refs(conn, job, info, wanted)

    async def _missing_refs(
        self, conn: Conn, job: Job, info: ConnectionInfo, wanted: dict[str, uuid.UUID]
    ) -> dict[str, str] | None:
        refs: dict[str, str] = {}
        missing: list[tuple[str, str, uuid.UUID, int]] = []
        for field_name, entity_id in wanted.items():
            entity_type = REFERENCE_FIELDS[field_name]
            row = await record_and_link(
                conn, entity_type, entity_id, info.id, tenant_id=job.tenant_id
            )
            if row is None:
                # Not the tenant's (the processor parks such changes; this record came
                # before it did): pushing it, or without it, would be wrong either way.
                raise InvalidRecordError(
                    "foreign_reference",
                    f"{field_name} {entity_id}: no {entity_type} of this tenant; correct the"
                    f" {job.entity_type} {job.entity_id}, then redrive",
                )
            if row["external_id"] is not None:
                refs[field_name] = row["external_id"]
            elif not row["deleted"]:
                missing.append((field_name, entity_type, entity_id, row["version"]))
            # Deleted and never synced: pushed without the reference.
        if not missing:
            return refs
        named = ", ".join(f"{f} {i} ({e})" for f, e, i, _ in missing)
        if job.attempts + 1 >= self.policy.max_attempts:
            # Bounded (DESIGN invariant 10): never pushed without it, never waited for ever.
            raise MissingReferenceError(
                f"{job.entity_type} {job.entity_id}: {named} not on the target after"
                f" {job.attempts + 1} waits; push it (or link it), then redrive"
            )
        now = datetime.now(UTC)
        await enqueue(
            conn,
            [
                (job.tenant_id, info.id, e, i, v, None, now)  # type: ignore[misc]
                for _, e, i, v in missing
                # One the target does not take from us can still be linked by a webhook
                # or a sync run: waited for, not queued (it would be skipped by rule).
                if info.syncs("out", e)
            ],
        )
        delay = min(DEPENDENCY_WAIT_SECONDS * 2**job.attempts, self.policy.backoff_cap_seconds)
        await reschedule(conn, job, delay, f"waiting for {named}", count_attempt=True)
        metrics.RETRIES.labels(info.provider, "dependency").inc()
        return None

    async def _remember(
        self,
        *,
        info: ConnectionInfo,
        job: Job,
        external_id: str,
        version: int,
        remote: RemoteRecord | None,
        pushed: dict[str, Any],
        outcome: str = "pushed",
        why: str | None = None,
    ) -> bool:
        """Link the record to the provider's id, remember the pushed state, log the push and
        finish the job, atomically. True when the job was re-armed for a newer version.
        ``outcome``/``why``: what the log says of a version that was not sent."""
        values: dict[str, Any] | None = None
        if remote is not None:
            values = canonical_values(job.entity_type, _reported(remote, pushed))
        pushed_hash = state_hash(values) if values is not None else None
        bookkept = (
            job.id,
            job.version,
            job.tenant_id,
            info.id,
            job.entity_type,
            job.entity_id,
            external_id,
            int((datetime.now(UTC) - job.committed_at).total_seconds() * 1000),
            outcome,
            why,
            pushed_hash,
            version,
            values,
            remote.version if remote else None,
            remote.updated_at if remote else None,
        )
        async with self.pool.acquire() as conn:
            try:
                for _ in range(BOOKKEEPING_ATTEMPTS - 1):
                    try:
                        return await _bookkeep(conn, bookkept)
                    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                        # PostgreSQL failed this side of a lock cycle: the provider has the
                        # write, so the bookkeeping is done again now, not the push after
                        # the job's lease.
                        metrics.RETRIES.labels(info.provider, "bookkeeping_deadlock").inc()
                return await _bookkeep(conn, bookkept)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != _EXTERNAL_ID_KEY:
                    raise
                taken = await _link_taken(conn, info, job, external_id)
        raise taken

    async def _key_taken(
        self, job: Job, info: ConnectionInfo, exc: asyncpg.UniqueViolationError
    ) -> bool:
        """A push PostgreSQL refused on a unique key: retried (the row holding the key may
        go) counting attempts, backing off as a failed call does, then one
        ``unique_violation`` dead letter naming the constraint. It escaped the push before,
        which then ran again every lease (60 s), for ever, without counting one."""
        constraint = exc.constraint_name or "a unique key"
        why = f"{job.entity_type} {job.entity_id}: PostgreSQL refused the push on {constraint}"
        metrics.RETRIES.labels(info.provider, "unique_violation").inc()
        if job.attempts + 1 >= self.policy.max_attempts:
            return await self._dead(
                job,
                info,
                "unique_violation",
                f"{why} in {job.attempts + 1} attempts ({exc}); another row holds that key:"
                " resolve the two, then redrive",
                None,
            )
        delay = full_jitter(
            job.attempts, self.policy.backoff_base_seconds, self.policy.backoff_cap_seconds
        )
        await reschedule(
            self.pool, job, max(delay, MIN_PAUSE_SECONDS), f"{why} ({exc})", count_attempt=True
        )
        log.warning(
            "push refused on a unique key, retrying: %s", constraint, extra=_retry_log(job, info)
        )
        return True

    async def _settle(self, job: Job, info: ConnectionInfo, exc: DeadLetter) -> bool:
        """Do what ``action_for`` says. True when the job's row is still queued: rescheduled,
        or re-armed for a newer version queued meanwhile."""
        action = action_for(exc, attempts=job.attempts, policy=self.policy)
        if isinstance(action, Park):
            return await self._dead(job, info, action.reason, action.detail, action.call)
        call = action.call
        metrics.RETRIES.labels(info.provider, call.reason).inc()
        await reschedule(
            self.pool, job, action.seconds, str(call), count_attempt=action.count_attempt
        )
        if not action.count_attempt:
            return True
        # Rate limits, open circuits and re-auth waits are not logged per push: the
        # gauges and the one log line of the cause say it without a flood.
        log.warning(
            "push failed, retrying in %.1fs: %s",
            action.seconds,
            call,
            extra=_retry_log(job, info) | {"status": call.error.status if call.error else None},
        )
        return True

    async def _dead(
        self,
        job: Job,
        info: ConnectionInfo,
        reason: str,
        detail: str,
        exc: CallFailedError | None,
    ) -> bool:
        """Park the push: its payload names the record, so a redrive re-queues it. True when
        a newer version of the record was queued meanwhile and is now due."""
        error = exc.error if exc is not None else None
        payload = {
            "connection_id": str(job.connection_id),
            "entity_type": job.entity_type,
            "entity_id": str(job.entity_id),
            "version": job.version,
            "attempts": job.attempts + 1,
            "request": error.request if error else None,
            "status": error.status if error else None,
            "response_excerpt": error.body_excerpt if error else None,
            # The provider's words, wherever its answer put them (the excerpt may cut them).
            "provider_message": error.provider_message if error else None,
        }
        dead_id = uuid.uuid4()
        rearmed = await self.pool.fetchval(
            _DEAD_SQL,
            job.id,
            job.version,
            dead_id,
            reason,
            detail[:2000],
            job.tenant_id,
            job.connection_id,
            json.dumps(payload).encode(),
        )
        metrics.DEAD_LETTERS.labels(info.provider, reason).inc()
        log.warning(
            "push dead-lettered: %s",
            reason,
            extra={
                "dead_letter_id": str(dead_id),
                "tenant": str(job.tenant_id),
                "connection": str(job.connection_id),
                "provider": info.provider,
                "entity_type": job.entity_type,
                "entity_id": str(job.entity_id),
                "detail": detail[:300],
            },
        )
        return rearmed is not None
