"""Running a backfill or reconciliation: page through a provider's list API and feed the
records to ``changes.normalized``, the same topic webhooks reach after mapping, so one
apply step (dedup, merge, conflict policies, outbox) handles every way a change arrives.

Each page is produced and acknowledged by Kafka before its cursor is checkpointed, so a
run killed at any point repeats at most one page when resumed; the change ids are
derived from the record's state, so a repeated page is dropped as a duplicate.

A full reconciliation also remembers every id the provider listed; links whose id was
not listed (and that existed before the run began) are records deleted at the provider,
emitted as deletes — unless that would delete an implausible share of the connection's
records, which looks like a misconfigured listing, not a purge, and fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from aiokafka import AIOKafkaProducer

from connectors.calls import CallFailedError, attempt
from connectors.limits import full_jitter
from connectors.runtime import Clients, ConnectionInfo, Handle
from connectors.spec import EntityType, Page, RemoteRecord
from crmsync.application.connection_runtime import load_connection
from crmsync.application.sync import jobs, metrics
from crmsync.application.sync.jobs import JobCancelledError, SyncJob
from crmsync.common.links import count_links, remote_updated_at, unlisted_external_ids
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange
from schemas.errors import DeadLetter, Stop

log = logging.getLogger(__name__)

Progress = Callable[[SyncJob, str], None]


@dataclass(frozen=True)
class RunPolicy:
    lease_seconds: float = 60.0
    # Tries per page; between them full-jitter backoff, or the provider's Retry-After.
    attempts: int = 8
    base_seconds: float = 1.0
    cap_seconds: float = 60.0
    # A background run can wait out a provider's rate limit; this bounds one wait.
    max_wait_seconds: float = 120.0
    # A full comparison refuses to delete more than this share of a type's records
    # (when there are at least delete_guard_min of them): an empty or truncated
    # listing must not wipe a tenant.
    max_delete_ratio: float = 0.5
    delete_guard_min: int = 10


class SyncFailedError(DeadLetter):
    """The run cannot go on: it ends ``failed`` with the message as its error, and may be
    started again once the cause is fixed."""

    def __init__(self, detail: str) -> None:
        super().__init__("sync_failed", detail, message=detail)


def outcome_for(exc: BaseException) -> tuple[jobs.Status, str] | None:
    """How a run ends when it raised ``exc``: ``cancelled`` when an operator stopped it,
    ``failed`` when it cannot go on as it is (any ``DeadLetter``: a listing that cannot be
    mapped, credentials that are missing; any ``Stop``: credentials no master key opens),
    with the message as the job's error. Resuming from the checkpoint would meet the same
    error again, for ever. None lets the error go up: a dependency is away, the process is
    stopping, or something unforeseen, and the lease runs out so the run resumes from its
    checkpoint."""
    match exc:
        case JobCancelledError():
            return "cancelled", str(exc)
        case DeadLetter() | Stop():
            return "failed", str(exc)
        case _:
            return None


def retry_delay(exc: CallFailedError, attempt: int, policy: RunPolicy) -> float | None:
    """Seconds to wait before listing a page again after failed try ``attempt`` (from 0);
    None when the run gives up: the failure is for good, or the tries are used up."""
    if not exc.retryable or attempt >= policy.attempts - 1:
        return None
    delay = exc.retry_after
    if delay is None:
        delay = full_jitter(attempt, policy.base_seconds, policy.cap_seconds)
    return min(delay, policy.max_wait_seconds)


def change_id(entity_type: str, record: RemoteRecord) -> str:
    """A dedup key that is the same for the same state and differs for any other state,
    even when a provider keeps its updated-at (or has none)."""
    state = json.dumps(
        [record.updated_at.isoformat(), record.version, record.deleted, record.data, record.refs],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(f"{entity_type}\0{record.external_id}\0{state}".encode()).hexdigest()
    return f"sync:{digest[:40]}"


def change_message(
    info: ConnectionInfo, entity_type: EntityType, record: RemoteRecord, now: datetime
) -> bytes:
    """``record``, as the connection's provider holds it, as a ``changes.normalized``
    message: what a webhook becomes once mapped, keyed for dedup by its state."""
    change = InternalChange(
        tenant_id=info.tenant_id,
        connection_id=info.id,
        received_at=now,
        change=ChangeEvent(
            event_id=change_id(entity_type, record),
            entity_type=entity_type,
            op="delete" if record.deleted else "upsert",
            external_id=record.external_id,
            occurred_at=record.updated_at,
            data={} if record.deleted else dict(record.data),
            refs={} if record.deleted else dict(record.refs),
        ),
        record_version=record.version,
    )
    return change.model_dump_json().encode()


class Observer:
    """Hands one provider record read outside a run to the processor, the way a run does:
    outbound reads a push's target before writing it, and a state there that we have not
    seen goes through the merge like any webhook or reconciled page (issue 17)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def __call__(
        self, info: ConnectionInfo, entity_type: EntityType, record: RemoteRecord
    ) -> str:
        """Produce ``record`` and return its dedup key once Kafka acknowledged it."""
        await self.producer.send_and_wait(
            self.topic,
            key=topics.normalized_key(info.id, entity_type, record.external_id),
            value=change_message(info, entity_type, record, datetime.now(UTC)),
        )
        return change_id(entity_type, record)


def runnable_types(info: ConnectionInfo, wanted: Sequence[str] | None) -> list[EntityType]:
    """The entity types a run of this connection covers: the requested ones, or every type
    it syncs inbound. Raises SyncFailedError naming what cannot be synced."""
    api = info.connector().api
    if api is None:
        raise SyncFailedError(f"provider {info.provider} has no API to list records from")
    if wanted:
        refused = [t for t in wanted if not info.syncs("in", t)]
        if refused:
            raise SyncFailedError(
                f"connection {info.name} does not sync {', '.join(refused)} inbound "
                f"(provider types: {', '.join(api.entity_types)}; "
                f"settings direction={info.settings.get('direction', 'both')})"
            )
        return [t for t in api.entity_types if t in wanted]
    types = [t for t in api.entity_types if info.syncs("in", t)]
    if not types:
        raise SyncFailedError(f"connection {info.name} syncs nothing inbound")
    return types


class SyncRunner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clients: Clients,
        producer: AIOKafkaProducer,
        *,
        topic: str,
        owner: str,
        policy: RunPolicy | None = None,
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.producer = producer
        self.topic = topic
        self.owner = owner
        self.policy = policy or RunPolicy()

    async def run(self, job: SyncJob, progress: Progress | None = None) -> SyncJob:
        """Run ``job`` (held by this owner) to its end; the row says how it ended."""
        status: jobs.Status = "succeeded"
        error: str | None = None
        provider = "unknown"
        metrics.RUNNING.inc()
        try:
            info = await load_connection(self.pool, job.connection_id, tenant_id=job.tenant_id)
            if info is None:
                raise SyncFailedError(f"connection {job.connection_id} no longer exists")
            provider = info.provider
            handle = await self.clients.get(info)
            for entity_type in job.entity_types:
                await self._entity(job, info, handle, entity_type, progress)
            if job.kind == "full_reconcile":
                await self._deletes(job, info, handle)
        except Exception as exc:
            # asyncio.CancelledError is no Exception: the process is stopping, and the
            # lease's row is kept as it is for whoever starts next.
            outcome = outcome_for(exc)
            if outcome is None:
                raise
            status, error = outcome
        finally:
            metrics.RUNNING.dec()
        log.log(
            logging.INFO if status == "succeeded" else logging.WARNING,
            "sync job %s (%s) %s: %d records seen, %d changed, %d deleted%s",
            job.id,
            job.kind,
            status,
            job.records_seen,
            job.records_changed,
            job.records_deleted,
            f": {error}" if error else "",
            extra={"connection": str(job.connection_id), "sync_job": str(job.id)},
        )
        await jobs.finish(self.pool, job, owner=self.owner, status=status, error=error)
        job.status = status
        metrics.RUNS.labels(provider, job.kind, status).inc()
        return job

    async def _entity(
        self,
        job: SyncJob,
        info: ConnectionInfo,
        handle: Handle,
        entity_type: EntityType,
        progress: Progress | None,
    ) -> None:
        state = job.progress[entity_type]
        if state.done:
            return
        # The next page is fetched while this one is produced and checkpointed: the
        # provider's time and Kafka's overlap. A failed fetch surfaces after the page
        # before it was checkpointed, so a retry resumes exactly there.
        pending: asyncio.Task[Page] | None = asyncio.create_task(
            self._page(handle, entity_type, state.cursor, job.modified_since)
        )
        try:
            while pending is not None:
                page = await pending
                pending = None
                if page.next_cursor is not None:
                    pending = asyncio.create_task(
                        self._page(handle, entity_type, page.next_cursor, job.modified_since)
                    )
                await self._take(job, info, entity_type, page, progress)
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, SyncFailedError):
                    await pending

    async def _take(
        self,
        job: SyncJob,
        info: ConnectionInfo,
        entity_type: EntityType,
        page: Page,
        progress: Progress | None,
    ) -> None:
        """Produce one page, then checkpoint the cursor after it."""
        state = job.progress[entity_type]
        changed = await self._emit(job, info, entity_type, page.records)
        job.records_changed += changed
        metrics.RECORDS.labels(info.provider, job.kind, "listed").inc(len(page.records))
        metrics.RECORDS.labels(info.provider, job.kind, "changed").inc(changed)
        if job.kind == "full_reconcile":
            await self.pool.execute(
                """
                INSERT INTO sync_job_seen (job_id, entity_type, external_id)
                SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING
                """,
                job.id,
                entity_type,
                [r.external_id for r in page.records],
            )
        state.cursor = page.next_cursor
        state.done = page.next_cursor is None
        state.seen += len(page.records)
        job.records_seen += len(page.records)
        await jobs.checkpoint(
            self.pool, job, owner=self.owner, lease_seconds=self.policy.lease_seconds
        )
        if progress is not None:
            progress(job, entity_type)

    async def _page(
        self,
        handle: Handle,
        entity_type: EntityType,
        cursor: str | None,
        modified_since: datetime | None,
    ) -> Page:
        p = self.policy
        for n in range(p.attempts):
            try:
                return await attempt(
                    handle,
                    lambda c: c.list_page(entity_type, cursor, modified_since),
                    max_wait_seconds=p.max_wait_seconds,
                )
            except CallFailedError as exc:
                delay = retry_delay(exc, n, p)
                if delay is None:
                    raise SyncFailedError(f"listing {entity_type}: {exc}") from None
                log.info(
                    "listing %s failed (%s), retrying in %.1fs",
                    entity_type,
                    exc.reason,
                    delay,
                    extra={"connection": str(handle.info.id), "provider": handle.info.provider},
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _emit(
        self,
        job: SyncJob,
        info: ConnectionInfo,
        entity_type: EntityType,
        records: Sequence[RemoteRecord],
    ) -> int:
        """Produce the page's records that may be news; return how many were newer than
        what the connection last told us. Returns once Kafka acknowledged all of them."""
        if not records:
            return 0
        seen = await remote_updated_at(
            self.pool, info.id, entity_type, [r.external_id for r in records]
        )
        now = datetime.now(UTC)
        sends = []
        changed = 0
        for record in records:
            last = seen.get(record.external_id)
            if last is not None and record.updated_at < last:
                continue  # older than a state we already applied (a webhook was faster)
            if record.external_id not in seen or last is None or record.updated_at > last:
                changed += 1
            sends.append(
                await self.producer.send(
                    self.topic,
                    key=topics.normalized_key(info.id, entity_type, record.external_id),
                    value=change_message(info, entity_type, record, now),
                )
            )
        # A page is checkpointed only after every record of it is acknowledged.
        await asyncio.gather(*sends)
        return changed

    async def _deletes(self, job: SyncJob, info: ConnectionInfo, handle: Handle) -> None:
        """Emit a delete for each live link the provider did not list (of the kinds it
        lists completely: ``ApiSpec.listed_partly``)."""
        now = datetime.now(UTC)
        api = handle.connector.api
        partly = api.listed_partly if api is not None else ()
        for entity_type in (t for t in job.entity_types if t not in partly):
            unlisted = await unlisted_external_ids(
                self.pool,
                connection_id=info.id,
                entity_type=entity_type,
                created_before=job.started_at,
                job_id=job.id,
            )
            if not unlisted:
                continue
            total = await count_links(self.pool, info.id, entity_type)
            p = self.policy
            if len(unlisted) >= p.delete_guard_min and len(unlisted) > p.max_delete_ratio * total:
                raise SyncFailedError(
                    f"refusing to delete {len(unlisted)} of {total} {entity_type} records the "
                    f"provider did not list (more than {p.max_delete_ratio:.0%}); check the "
                    "connection's settings, or delete them deliberately"
                )
            sends = []
            for external_id in unlisted:
                gone = RemoteRecord(
                    entity_type=entity_type,
                    external_id=external_id,
                    updated_at=now,
                    data={},
                    deleted=True,
                )
                sends.append(
                    await self.producer.send(
                        self.topic,
                        key=topics.normalized_key(info.id, entity_type, external_id),
                        value=change_message(info, entity_type, gone, now),
                    )
                )
            await asyncio.gather(*sends)
            job.records_deleted += len(unlisted)
            metrics.RECORDS.labels(info.provider, job.kind, "deleted").inc(len(unlisted))
            await jobs.checkpoint(
                self.pool, job, owner=self.owner, lease_seconds=self.policy.lease_seconds
            )
