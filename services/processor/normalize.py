"""From verified webhooks to canonical changes: map through the provider's connector,
hydrate thin webhooks through its API, and re-key by entity.

Each envelope on ``webhooks.raw`` becomes zero or more InternalChange events on
``changes.normalized``, keyed by connection + entity type + external id so that one
entity's changes stay in order while the apply step spreads over every partition.
Nothing is applied here: the apply agent owns the transaction, dedup and merge.

Bad input never stops the partition: an envelope that cannot be parsed or mapped is a
``processor`` dead letter; one whose record cannot be fetched after bounded retries is a
``hydrate`` dead letter. Both keep the envelope's bytes, so a redrive after a fix (or
after the provider recovers) re-enters here and dedup drops what already went through.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import ValidationError

from connectors.calls import CallFailedError, attempt
from connectors.limits import full_jitter
from connectors.runtime import Clients, ConnectionInfo, CredentialsError
from connectors.spec import MappingError, RemoteRecord, WebhookItem
from crmsync.application.connection_runtime import load_connection
from crmsync.common import links
from crmsync.common.accounting import SkipReason, record_inbound_skips
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange
from schemas.envelope import WebhookEnvelope
from schemas.errors import DeadLetter
from services.processor import metrics
from services.processor.deadletters import Source, dead_letter

log = logging.getLogger(__name__)

# ChangeEvent.event_id holds at most 200 characters; longer item ids are hashed.
MAX_EVENT_ID = 200
# A connection row is re-read after this long: settings changes apply within seconds.
CONNECTION_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class HydrationPolicy:
    # Five tries over roughly 15 s ride out a provider blip; longer outages dead-letter
    # the envelope (redrivable) instead of holding the partition.
    attempts: int = 5
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    # A Retry-After longer than this is not waited out in the partition loop.
    max_wait_seconds: float = 30.0


@dataclass(frozen=True)
class Output:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class Mapped:
    source: Source
    envelope: WebhookEnvelope
    info: ConnectionInfo
    items: tuple[WebhookItem, ...]


def item_key(envelope: WebhookEnvelope, item: WebhookItem) -> str:
    """The dedup key of one webhook item: its own event id, or, for an item nothing tells
    from the next identical notice (``per_receipt``), that id on this receipt."""
    if item.per_receipt:
        return item_event_id(f"{item.event_id}@{envelope.event_id}")
    return item_event_id(item.event_id)


def _near_our_write(
    info: ConnectionInfo, item: WebhookItem, pushed: dict[tuple[str, str], datetime]
) -> bool:
    """Is this full webhook stamped too close to our last write of its record to tell which
    came first? Stripe stamps whole seconds: a user's edit made in the second of our push
    may be older than the push (which overwrote it there: its copy is no longer true) or
    newer (an edit on top of ours). The record as it is now says which, so it is read."""
    ours = pushed.get((item.entity_type, item.external_id))
    api = info.connector().api
    if ours is None or api is None or item.occurred_at is None:
        return False  # a notice without a time is hydrated anyway (thin) or cannot tell
    return item.occurred_at < ours + timedelta(seconds=api.clock_resolution_seconds)


def item_event_id(item_id: str) -> str:
    if len(item_id) <= MAX_EVENT_ID:
        return item_id
    return "sha256:" + hashlib.sha256(item_id.encode()).hexdigest()


class HydrationError(DeadLetter):
    """The record a thin webhook announced could not be fetched: the envelope is parked
    (stage ``hydrate``) with ``reason``."""


class Normalizer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clients: Clients | None,
        *,
        policy: HydrationPolicy | None = None,
    ) -> None:
        self.pool = pool
        # None: no API access in this process (tests of full-webhook providers).
        self.clients = clients
        self.policy = policy or HydrationPolicy()
        self._connections: dict[uuid.UUID, tuple[float, ConnectionInfo | None]] = {}

    async def handle(self, sources: Sequence[Source]) -> list[Output]:
        """The normalised changes for a batch of envelopes, in order; dead letters written.

        Mapping is pure and runs first for the whole batch, so one query finds the items
        already applied (a redelivered thin webhook is not fetched again); hydration then
        runs concurrently across envelopes, within each connection's limits.
        """
        mapped = [await self._map(s) for s in sources]
        known = await self._processed(mapped)
        outputs = await asyncio.gather(*(self._emit(m, known) for m in mapped if m is not None))
        return [o for batch in outputs for o in batch]

    async def _map(self, source: Source) -> Mapped | None:
        try:
            envelope = WebhookEnvelope.model_validate_json(source.value)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "(body)"
            await self._dead(source, None, "unparseable", f"{where}: {first['msg']}")
            return None
        info = await self._connection(envelope.connection_id)
        if info is None:
            await self._dead(
                source,
                None,
                "unknown_connection",
                f"connection {envelope.connection_id}",
                named=(envelope.tenant_id, envelope.connection_id),
            )
            return None
        connector = info.connector()
        if connector.mapper is None:
            await self._dead(
                source, info, "no_mapping", f"provider {info.provider} has no inbound mapping"
            )
            return None
        try:
            parsed = connector.mapper.parse_webhook(envelope.body, envelope.headers, info.settings)
        except MappingError as exc:
            await self._dead(source, info, exc.reason, exc.detail)
            return None
        if parsed.ignored:
            metrics.WEBHOOK_ITEMS.labels(info.provider, "ignored").inc(parsed.ignored)
        return Mapped(source, envelope, info, parsed.items)

    async def _processed(self, mapped: Sequence[Mapped | None]) -> set[tuple[uuid.UUID, str]]:
        pairs = [
            (m.info.id, item_key(m.envelope, item))
            for m in mapped
            if m is not None
            for item in m.items
        ]
        if not pairs:
            return set()
        rows = await self.pool.fetch(
            """
            SELECT p.connection_id, p.provider_event_id
              FROM unnest($1::uuid[], $2::text[]) AS w(c, e)
              JOIN processed_events p ON p.connection_id = w.c AND p.provider_event_id = w.e
            """,
            [c for c, _ in pairs],
            [e for _, e in pairs],
        )
        return {(r["connection_id"], r["provider_event_id"]) for r in rows}

    async def _connection(self, connection_id: uuid.UUID) -> ConnectionInfo | None:
        cached = self._connections.get(connection_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CONNECTION_TTL_SECONDS:
            return cached[1]
        # Any tenant's: the connection's own row says whose events these are (ingest
        # stamped the envelope from it), and everything below goes by info.tenant_id.
        info = await load_connection(self.pool, connection_id, tenant_id=None)
        self._connections[connection_id] = (now, info)
        return info

    async def _emit(self, mapped: Mapped, known: set[tuple[uuid.UUID, str]]) -> list[Output]:
        info = mapped.info
        outputs: list[Output] = []
        # Items dropped on purpose, recorded so the ledger accounts for them.
        skips: list[tuple[uuid.UUID, str, SkipReason]] = []
        failure: HydrationError | None = None
        pushed = await self._pushed(info, mapped.items)
        for item in mapped.items:
            event_id = item_key(mapped.envelope, item)
            if not info.syncs("in", item.entity_type):
                skips.append((info.id, event_id, "not_synced"))
                # settings direction "out", or entity_types without this one: the provider
                # may still send it (one webhook subscription covers every type).
                metrics.WEBHOOK_ITEMS.labels(info.provider, "not_synced").inc()
                continue
            if (info.id, event_id) in known:
                metrics.WEBHOOK_ITEMS.labels(info.provider, "duplicate").inc()
                continue
            try:
                record = await self._record(info, item, pushed)
            except HydrationError as exc:
                failure = failure or exc
                metrics.WEBHOOK_ITEMS.labels(info.provider, "hydrate_failed").inc()
                continue
            if record is None and item.op == "upsert":
                # The record is gone at the provider; its delete arrives as its own event.
                skips.append((info.id, event_id, "gone"))
                metrics.WEBHOOK_ITEMS.labels(info.provider, "gone").inc()
                continue
            outputs.append(self._change(mapped.envelope, info, item, event_id, record))
            metrics.WEBHOOK_ITEMS.labels(info.provider, "normalized").inc()
        # Before the agent acknowledges the envelope: a retried batch records nothing new.
        await record_inbound_skips(self.pool, skips)
        if failure is not None:
            # The whole envelope is parked: a redrive re-fetches; dedup drops the items
            # that went through this time.
            await self._dead(mapped.source, info, failure.reason, failure.detail, stage="hydrate")
        return outputs

    @staticmethod
    def _change(
        envelope: WebhookEnvelope,
        info: ConnectionInfo,
        item: WebhookItem,
        event_id: str,
        record: RemoteRecord | None,
    ) -> Output:
        deleted = item.op == "delete" or (record is not None and record.deleted)
        data: dict[str, Any] = dict(record.data) if record is not None and not deleted else {}
        refs: dict[str, str] = dict(record.refs) if record is not None and not deleted else {}
        change = InternalChange(
            tenant_id=info.tenant_id,
            connection_id=info.id,
            received_at=envelope.received_at,
            change=ChangeEvent(
                event_id=event_id,
                entity_type=item.entity_type,
                op="delete" if deleted else "upsert",
                external_id=item.external_id,
                occurred_at=(
                    record.updated_at
                    if record is not None
                    else (item.occurred_at or envelope.received_at)
                ),
                data=data,
                refs=refs,
            ),
            record_version=record.version if record is not None else None,
        )
        return Output(
            topics.normalized_key(info.id, item.entity_type, item.external_id),
            change.model_dump_json().encode(),
        )

    async def _record(
        self, info: ConnectionInfo, item: WebhookItem, pushed: dict[tuple[str, str], datetime]
    ) -> RemoteRecord | None:
        if item.op == "delete":
            return item.record
        if item.record is None:
            return await self.hydrate(info, item)
        if not _near_our_write(info, item, pushed):
            return item.record
        try:
            return await self.hydrate(info, item)
        except HydrationError as exc:
            # The webhook's own copy is still a state the record had: applied by its stamp
            # as before, rather than parking a full webhook while the provider is down.
            log.warning(
                "kept the webhook's copy of %s %s: %s",
                item.entity_type,
                item.external_id,
                exc.reason,
                extra={"tenant": str(info.tenant_id), "connection": str(info.id)},
            )
            return item.record

    async def _pushed(
        self, info: ConnectionInfo, items: Sequence[WebhookItem]
    ) -> dict[tuple[str, str], datetime]:
        """(entity type, external id) → the provider's stamp of our last write to it, for
        the full webhooks of a provider whose clock is too coarse to order them against
        that write (``ApiSpec.clock_resolution_seconds``); empty for every other."""
        api = info.connector().api
        if self.clients is None or api is None or api.clock_resolution_seconds <= 0:
            return {}
        wanted: dict[str, list[str]] = {}
        for item in items:
            if item.record is not None and item.op == "upsert":
                wanted.setdefault(item.entity_type, []).append(item.external_id)
        found: dict[tuple[str, str], datetime] = {}
        for entity_type, external_ids in wanted.items():
            stamps = await links.pushed_updated_at(self.pool, info.id, entity_type, external_ids)
            found.update({(entity_type, x): at for x, at in stamps.items()})
        return found

    async def hydrate(self, info: ConnectionInfo, item: WebhookItem) -> RemoteRecord | None:
        """The record a thin webhook announced, fetched now; None when it no longer exists."""
        if self.clients is None:
            raise HydrationError("no_api_client", "this processor has no provider API access")
        try:
            handle = await self.clients.get(info)
        except CredentialsError as exc:
            raise HydrationError(exc.reason, exc.detail) from None
        p = self.policy
        started = time.perf_counter()
        last: CallFailedError | None = None
        for n in range(p.attempts):
            try:
                record = await attempt(
                    handle,
                    lambda c: c.fetch(item.entity_type, item.external_id),
                    max_wait_seconds=p.max_wait_seconds,
                )
            except CallFailedError as exc:
                last = exc
                if exc.reason == "not_found":
                    metrics.HYDRATIONS.labels(info.provider, "not_found").inc()
                    return None
                if not exc.retryable or n == p.attempts - 1:
                    break
                delay = exc.retry_after
                if delay is None:
                    delay = full_jitter(n, p.base_seconds, p.cap_seconds)
                if delay > p.max_wait_seconds:
                    break
                metrics.HYDRATION_RETRIES.labels(info.provider, exc.reason).inc()
                await asyncio.sleep(delay)
                continue
            metrics.HYDRATIONS.labels(info.provider, "fetched").inc()
            metrics.HYDRATION_SECONDS.labels(info.provider).observe(time.perf_counter() - started)
            return record
        assert last is not None  # noqa: S101 - the loop ran at least once
        metrics.HYDRATIONS.labels(info.provider, "failed").inc()
        detail = f"{item.entity_type} {item.external_id}: {last}"
        if last.error is not None and last.error.body_excerpt:
            detail += f" — {last.error.body_excerpt[:300]}"
        raise HydrationError(last.reason, detail)

    async def _dead(
        self,
        source: Source,
        info: ConnectionInfo | None,
        reason: str,
        detail: str,
        *,
        stage: str = "processor",
        named: tuple[uuid.UUID, uuid.UUID] | None = None,
    ) -> None:
        """``named``: the tenant and connection the envelope names, when ``info`` is unknown."""
        tenant_id, connection_id = (info.tenant_id, info.id) if info else named or (None, None)
        async with self.pool.acquire() as conn:
            await dead_letter(
                conn,
                source,
                stage=stage,
                reason=reason,
                detail=detail,
                tenant_id=tenant_id,
                connection_id=connection_id,
                provider=info.provider if info else None,
            )
        metrics.EVENTS.labels(topics.WEBHOOKS_RAW.name, "dead_lettered").inc()
