"""Ingest's request handlers: parse, verify, hand to Kafka, answer. Nothing else.

A 2xx means Kafka acknowledged the event (acks=all); anything that prevents that is a 503
so the provider retries. Signatures are checked over the raw bytes before any parsing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import Field, TypeAdapter, ValidationError

from connectors.base import (
    DocumentFetcher,
    DocumentUnavailableError,
    FetchingScheme,
    SignatureError,
    Verified,
    WebhookRequest,
)
from connectors.registry import WEBHOOK_PROVIDERS
from crmsync.common.connections import ActiveConnection
from crmsync.common.crypto import hash_api_key
from crmsync.common.jsonbody import NotJsonError, parse_json
from crmsync.common.kafka import LOST_PRODUCER_STATE, RenewableProducer
from crmsync.common.problems import problem
from crmsync.common.settings import topic_name
from crmsync.settings.ingest import MAX_RECORD_BYTES, IngestSettings
from schemas import topics
from schemas.changes import MAX_CHANGES_PER_REQUEST, ChangeEvent, InternalChange
from schemas.envelope import WebhookEnvelope
from schemas.errors import RefuseInput, RetryLater
from services.ingest import metrics
from services.ingest.connections import ConnectionCache
from services.ingest.handshakes import (
    ForeignHandshakeError,
    HandshakeInbox,
    HandshakeRefusedError,
    handshake_of,
)
from services.ingest.quotas import QuotaKeeper

log = logging.getLogger(__name__)

# Xero's Intent-to-Receive checks the status code and wants an empty body either way.
EMPTY_BODY_PROVIDERS = frozenset({"xero"})
RETRY_AFTER_SECONDS = "5"
# Unconfirmed handshakes are tried within seconds (services/outbound/handshakes.py): a
# minute later there is room again unless the provider keeps refusing them.
HANDSHAKE_RETRY_AFTER_SECONDS = "60"
# A record's framing in a batch (varints, attributes, its share of the batch header); far
# more than Kafka's record format needs, so a record that passes is never refused for size.
RECORD_OVERHEAD_BYTES = 512
ROTATION_FRESHNESS_SECONDS = 1.0
# What json_response({"status": "accepted", "event_id": ...}) wrote, without json.dumps:
# the id is a UUID's text, which needs no escaping.
_ACCEPTED = '{{"status": "accepted", "event_id": "{}"}}'

# A well-formed handshake refused for the connection's state, by ingest's receipt: 409, not
# 401, when the connection takes none now (an operator's `await-handshake` changes that and
# the same post then works); 429 while it holds the most unconfirmed ones it keeps.
_HANDSHAKE_REFUSALS: dict[str, tuple[int, str, dict[str, str] | None]] = {
    "not_awaited": (
        409,
        "this connection takes no webhook handshake now (an operator opens a window with"
        " `crmsync connections await-handshake`)",
        None,
    ),
    "too_many": (
        429,
        "this connection holds the most unconfirmed handshakes it keeps; retry later",
        {"Retry-After": HANDSHAKE_RETRY_AFTER_SECONDS},
    ),
}

# How a refused envelope field is named to the sender: what in its request it came from.
_ENVELOPE_FIELDS = {
    "content_type": "Content-Type header",
    "provider_event_id": "event id",
    "headers": "headers",
}

_CHANGES = TypeAdapter(
    ChangeEvent
    | Annotated[list[ChangeEvent], Field(min_length=1, max_length=MAX_CHANGES_PER_REQUEST)]
)


# JSON can only carry U+0000 escaped: its bytes are a cheap test before the walk.
_NUL_ESCAPE = b"\\u0000"


def _find_nul(value: Any, loc: str = "") -> str | None:
    """Where the first U+0000 in a parsed body is, as a JSON-pointer-like path, or None."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"{loc}/{key}"
            if (found := _find_nul(item, f"{loc}/{key}")) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _find_nul(item, f"{loc}/{index}")) is not None:
                return found
    return None


def _changes_from(body: bytes) -> list[ChangeEvent] | web.Response:
    """The change events of a ``POST /v1/changes`` body, or the problem answer refusing it."""
    try:
        parsed = parse_json(body)
    except NotJsonError as exc:
        return problem(400, f"body is not JSON: {exc}")
    try:
        validated = _CHANGES.validate_python(parsed)
    except ValidationError as exc:
        errors = [
            {
                "loc": "/" + "/".join(str(p) for p in e["loc"]),
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_url=False)
        ]
        return problem(422, "invalid change event", errors=errors)
    if _NUL_ESCAPE in body and (nul := _find_nul(parsed)) is not None:
        return problem(
            422,
            "invalid change event",
            errors=[
                {
                    "loc": nul,
                    "msg": "PostgreSQL stores no U+0000 character in text",
                    "type": "nul_character",
                }
            ],
        )
    return validated if isinstance(validated, list) else [validated]


def _envelope_json(envelope: WebhookEnvelope) -> bytes:
    """``envelope.model_dump_json().encode()``, byte for byte, at half the cost: the
    serializer's own bytes, without model_dump_json's option handling and str round trip."""
    return WebhookEnvelope.__pydantic_serializer__.to_json(envelope)


class KafkaNotAcknowledgedError(RetryLater):
    """Kafka did not acknowledge within the bound; the caller answers 503."""


class RecordTooLargeError(RefuseInput):
    """A record would exceed what its topic takes; nothing was sent, the caller answers 413.

    Retrying cannot help, so this must not be a 503: the provider would retry for ever.
    """


async def _send(producer: AIOKafkaProducer, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Send every record and wait until Kafka acknowledged each."""
    futures = [await producer.send(topic, value, key=key) for key, value in records]
    if len(futures) == 1:
        await futures[0]
    else:
        await asyncio.gather(*futures)


@dataclass
class Ingest:
    settings: IngestSettings
    cache_of: Callable[[], ConnectionCache]
    producer_of: Callable[[], RenewableProducer]
    quotas_of: Callable[[], QuotaKeeper]
    # What a scheme that fetches (PayPal's certificate) fetches through; None: no scheme
    # may fetch, and such a provider's webhooks fail as "bad_certificate".
    documents_of: Callable[[], DocumentFetcher] | None = None
    # Where subscription handshakes are stored; None: none is taken (each is a 401).
    handshakes_of: Callable[[], HandshakeInbox] | None = None
    clock: Callable[[], float] = time.time
    _raw_topic: str = field(init=False)
    _changes_topic: str = field(init=False)

    def __post_init__(self) -> None:
        self._raw_topic = topic_name(self.settings, topics.WEBHOOKS_RAW.name)
        self._changes_topic = topic_name(self.settings, topics.CHANGES_INTERNAL.name)

    @property
    def cache(self) -> ConnectionCache:
        return self.cache_of()

    @property
    def quotas(self) -> QuotaKeeper:
        return self.quotas_of()

    # -- Kafka ------------------------------------------------------------------------

    async def _produce(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        """Send every record and wait for all acknowledgements, within the bound.

        Records too large for the topic are refused before any is sent, so a batch of
        changes is stored whole or not at all.
        """
        for key, value in records:
            size = len(key) + len(value) + RECORD_OVERHEAD_BYTES
            if size > MAX_RECORD_BYTES:
                raise RecordTooLargeError(
                    f"the event's record would be {size} bytes; {topic} takes {MAX_RECORD_BYTES}"
                )
        renewable = self.producer_of()
        started = time.perf_counter()
        try:
            # A deadline on this task, not wait_for's extra task per request; on expiry the
            # awaited futures are cancelled as before (the records may still land: a 503
            # makes the provider retry, and the processor deduplicates).
            async with asyncio.timeout(self.settings.ingest_produce_timeout_seconds):
                producer = renewable.producer
                try:
                    await _send(producer, topic, records)
                except LOST_PRODUCER_STATE as exc:
                    # The broker lost this producer's state (a Kafka restart): it would
                    # refuse it for ever (aiokafka #1017). Sent again, whole, through a new
                    # one; what the old one had landed is deduplicated by the processor.
                    await renewable.renew(producer, exc)
                    await _send(renewable.producer, topic, records)
        except (KafkaError, TimeoutError) as exc:
            raise KafkaNotAcknowledgedError(str(exc) or type(exc).__name__) from None
        metrics.produce_seconds(topic).observe(time.perf_counter() - started)

    # -- webhooks ---------------------------------------------------------------------

    def _public_url(self, request: web.Request) -> str:
        if self.settings.ingest_trust_forwarded_headers:
            proto = request.headers.get("X-Forwarded-Proto", request.scheme)
            host = request.headers.get("X-Forwarded-Host", request.host)
            return f"{proto}://{host}{request.path_qs}"
        return f"{self.settings.ingest_public_base_url}{request.path_qs}"

    async def _find(
        self, connection_id: str, provider: str, arrived: float
    ) -> ActiveConnection | None:
        found = self.cache.connection_by_text(connection_id)
        if found is None:
            try:
                cid = uuid.UUID(connection_id)
            except ValueError:
                return None
            found = self.cache.connection(cid)
            if found is None and await self.cache.refresh(since=arrived):
                found = self.cache.connection(cid)
        return found if found is not None and found.provider == provider else None

    async def _verify(self, conn: ActiveConnection, request: WebhookRequest) -> Verified:
        scheme = self.cache.endpoint(conn).connector.scheme
        now = self.clock()
        if isinstance(scheme, FetchingScheme) and self.documents_of is not None:
            return await scheme.verify_fetching(
                request, conn.secrets_at(now), now, conn.settings, self.documents_of()
            )
        return scheme.verify(request, conn.secrets_at(now), now)

    async def _verify_fresh(
        self, conn: ActiveConnection, signed: WebhookRequest, arrived: float
    ) -> Verified:
        """Verify; on failure, once, against a reloaded cache (a secret rotated just now)."""
        try:
            return await self._verify(conn, signed)
        except SignatureError:
            # A load from the last second is fresh enough for a rotation, and keeps a flood
            # of bad signatures from waiting on a reload each.
            reloaded = await self.cache.refresh(since=arrived - ROTATION_FRESHNESS_SECONDS)
            fresh = self.cache.connection(conn.id) if reloaded else None
            if fresh is None:
                raise
            return await self._verify(fresh, signed)

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        provider = request.match_info["provider"]
        label = provider if provider in WEBHOOK_PROVIDERS else "unknown"
        return await self._measured(label, self._webhook(request, provider))

    async def _webhook(self, request: web.Request, provider: str) -> web.StreamResponse:
        arrived = self.cache.now()
        conn = await self._find(request.match_info["connection_id"], provider, arrived)
        if provider not in WEBHOOK_PROVIDERS or conn is None:
            # One answer for both, so probing cannot tell providers from connections.
            return problem(404, "no such webhook endpoint")
        body = await self._read_body(request)
        metrics.payload_bytes(provider).observe(len(body))
        signed = WebhookRequest(
            method=request.method,
            url=self._public_url(request),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        try:
            verified = await self._verify_fresh(conn, signed, arrived)
        except SignatureError as exc:
            # Unsigned, so perhaps the one unsigned post a provider sends: its subscription
            # handshake, parsed only for a connection whose mapping declares one.
            answered = await self._handshake(conn, signed)
            if answered is not None:
                return answered
            metrics.SIGNATURE_FAILURES.labels(provider, exc.reason).inc()
            log.info(
                "webhook signature refused: %s",
                exc.reason,
                extra={
                    "provider": provider,
                    "tenant": str(conn.tenant_id),
                    "connection": str(conn.id),
                },
            )
            return self._answer(provider, 401, {"detail": "signature verification failed"})
        except DocumentUnavailableError as exc:
            # The certificate the delivery names could not be fetched now: the provider
            # delivers again later, when it may be.
            log.warning(
                "webhook not verified, its certificate is unavailable: %s",
                exc,
                extra={"provider": provider, "connection": str(conn.id)},
            )
            return problem(
                503,
                "signature not verifiable now, retry later",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        if verified.handshake:
            return self._answer(provider, 200, {"status": "handshake"})
        return await self._store(provider, conn, signed, verified)

    async def _handshake(
        self, conn: ActiveConnection, signed: WebhookRequest
    ) -> web.Response | None:
        """The answer to a subscription handshake (stored for the outbound service to
        confirm, or refused, precisely); None when the request is no handshake."""
        if self.handshakes_of is None:
            return None
        try:
            handshake = handshake_of(conn, signed)
        except HandshakeRefusedError as exc:
            # Well formed but another account's is a 403: its sender is not left guessing
            # at a format (422) when the account is what is wrong.
            foreign = isinstance(exc, ForeignHandshakeError)
            metrics.HANDSHAKES.labels("foreign_account" if foreign else "malformed").inc()
            return problem(403 if foreign else 422, f"webhook handshake refused: {exc}")
        if handshake is None:
            return None
        try:
            receipt = await self.handshakes_of().receive(conn, handshake)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning(
                "webhook handshake not stored, answering 503: %s",
                exc,
                extra={"tenant": str(conn.tenant_id), "connection": str(conn.id)},
            )
            retry = {"Retry-After": RETRY_AFTER_SECONDS}
            return problem(503, "handshake not stored, retry later", headers=retry)
        metrics.HANDSHAKES.labels(receipt).inc()
        refused = _HANDSHAKE_REFUSALS.get(receipt)
        if refused is not None:
            status, detail, headers = refused
            return problem(status, detail, headers=headers)
        # 202: stored, not done: the provider's acceptance of the code is what confirms it.
        return web.json_response({"status": "handshake received"}, status=202)

    async def _store(
        self, provider: str, conn: ActiveConnection, signed: WebhookRequest, verified: Verified
    ) -> web.Response:
        """Write a verified webhook's envelope to Kafka and answer the provider."""
        endpoint = self.cache.endpoint(conn)
        try:
            envelope = WebhookEnvelope(
                tenant_id=conn.tenant_id,
                connection_id=conn.id,
                provider=provider,
                provider_event_id=verified.provider_event_id,
                received_at=datetime.now(UTC),
                content_type=signed.headers.get("content-type"),
                headers={
                    h: signed.headers[h]
                    for h in endpoint.connector.kept_headers
                    if h in signed.headers
                },
                body=signed.body,
            )
        except ValidationError as exc:
            # What the request itself carries and the envelope bounds: a Content-Type or
            # event id longer than any provider sends. Retrying the same request cannot help.
            detail = "; ".join(
                f"{_ENVELOPE_FIELDS.get(str(e['loc'][0]), str(e['loc'][0]))}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return self._answer(provider, 400, {"detail": detail})
        event_id = str(envelope.event_id)
        try:
            # Keyed by connection: one connection's events keep their order in a partition.
            await self._produce(self._raw_topic, [(endpoint.record_key, _envelope_json(envelope))])
        except RecordTooLargeError as exc:
            return self._answer(provider, 413, {"detail": str(exc)})
        except KafkaNotAcknowledgedError as exc:
            log.warning(
                "kafka did not acknowledge a webhook, answering 503: %s",
                exc,
                extra={
                    "event_id": event_id,
                    "provider": provider,
                    "tenant": endpoint.tenant_text,
                    "connection": endpoint.connection_text,
                },
            )
            return problem(
                503, "event not stored, retry later", headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        metrics.events(provider).inc()
        # Counted once acknowledged, and never refused: past the tenant's rate the webhook
        # is accepted all the same and counted as over; the notifier tells the tenant.
        admission = self.quotas.meter.admit(conn.tenant_id, 1, self.quotas.now(), refusable=False)
        if admission.over:
            metrics.quota_over(provider, "accepted").inc()
        if log.isEnabledFor(logging.DEBUG):  # skips building the fields when not logged
            log.debug(
                "webhook accepted",
                extra={
                    "event_id": event_id,
                    "provider_event_id": verified.provider_event_id,
                    "tenant": endpoint.tenant_text,
                    "connection": endpoint.connection_text,
                    "provider": provider,
                },
            )
        if provider in EMPTY_BODY_PROVIDERS:
            return web.Response(status=200)
        return web.Response(text=_ACCEPTED.format(event_id), content_type="application/json")

    @staticmethod
    def _answer(provider: str, status: int, body: dict[str, Any]) -> web.Response:
        if provider in EMPTY_BODY_PROVIDERS:
            return web.Response(status=status)
        if status >= 400:
            return problem(status, body.get("detail"))
        return web.json_response(body, status=status)

    # -- internal changes -------------------------------------------------------------

    async def changes(self, request: web.Request) -> web.StreamResponse:
        return await self._measured("internal", self._changes(request))

    async def _changes(self, request: web.Request) -> web.StreamResponse:
        arrived = self.cache.now()
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        key = None
        if scheme.lower() == "bearer" and token:
            key_hash = hash_api_key(token.strip())
            key = self.cache.publish_key(key_hash)
            if key is None and await self.cache.refresh(since=arrived):
                key = self.cache.publish_key(key_hash)
        if key is None:
            return problem(
                401, "a valid publish API key is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if key.key_id is not None:
            self.cache.last_used.touch(key.key_id)
        body = await self._read_body(request)
        metrics.payload_bytes("internal").observe(len(body))
        changes = _changes_from(body)
        if isinstance(changes, web.Response):
            return changes
        refused = await self._over_quota(key.tenant_id, key.connection_id, changes)
        if refused is not None:
            return refused
        now = datetime.now(UTC)
        records = []
        for change in changes:
            event = InternalChange(
                tenant_id=key.tenant_id,
                connection_id=key.connection_id,
                received_at=now,
                change=change,
            )
            # Keyed by tenant + entity: one record's changes stay in order.
            entity_key = f"{key.tenant_id}:{change.entity_type}:{change.external_id}"
            records.append((entity_key.encode(), event.model_dump_json().encode()))
        try:
            await self._produce(self._changes_topic, records)
        except RecordTooLargeError as exc:
            self.quotas.meter.release(key.tenant_id, len(records), self.quotas.now())
            return problem(413, f"a change is too large to store: {exc}")
        except KafkaNotAcknowledgedError as exc:
            self.quotas.meter.release(key.tenant_id, len(records), self.quotas.now())
            log.warning(
                "kafka did not acknowledge internal changes, answering 503: %s",
                exc,
                extra={
                    "provider": "internal",
                    "tenant": str(key.tenant_id),
                    "connection": str(key.connection_id),
                },
            )
            return problem(
                503, "changes not stored, retry later", headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        metrics.events("internal").inc(len(records))
        return web.json_response({"status": "accepted", "accepted": len(records)}, status=202)

    async def _over_quota(
        self, tenant_id: uuid.UUID, connection_id: uuid.UUID, changes: list[ChangeEvent]
    ) -> web.Response | None:
        """The 429 or 409 refusing these changes for the tenant's quotas, else None (and
        the changes are counted against the rate). In memory, except when the tenant's
        records are at their limit: then its links tell creates from updates."""
        keeper = self.quotas
        now = keeper.now()
        admission = keeper.meter.admit(tenant_id, len(changes), now, refusable=True)
        if not admission.admitted:
            metrics.quota_over("internal", "refused").inc(len(changes))
            return problem(
                429,
                f"the tenant's quota of {admission.limit} change events per minute is used up;"
                f" retry in {admission.retry_after} s",
                headers={"Retry-After": str(admission.retry_after)},
                quota="events_per_minute",
                limit=admission.limit,
                retry_after=admission.retry_after,
            )
        full = keeper.records_full(tenant_id)
        if full is None:
            return None
        try:
            new = await keeper.new_records(connection_id, changes)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            keeper.meter.release(tenant_id, len(changes), now)
            log.warning("records quota not checked, answering 503: %s", exc)
            return problem(
                503, "changes not stored, retry later", headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        creating = [
            {
                "loc": f"/{i}" if len(changes) > 1 else "/",
                "msg": f"{changes[i].entity_type} {changes[i].external_id} would be a new record",
                "type": "records_quota",
            }
            for i in new
        ]
        if not creating:
            return None
        keeper.meter.release(tenant_id, len(changes), now)
        limit, used = full
        return problem(
            409,
            f"the tenant holds {used} records and its quota allows {limit}: changes to records"
            " it holds are taken, new ones are not (nothing of this request was stored)",
            quota="records",
            limit=limit,
            usage=used,
            errors=creating,
        )

    # -- common -----------------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, refused with 413 before reading when its declared length is too
        large, and (via client_max_size) as soon as a streamed one grows too large."""
        limit = self.settings.ingest_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(limit, request.content_length)
        return await request.read()

    async def _measured(
        self, provider: str, handling: Awaitable[web.StreamResponse]
    ) -> web.StreamResponse:
        started = time.perf_counter()
        metrics.IN_FLIGHT.inc()
        status = 500
        try:
            response = await handling
            status = response.status
            return response
        except web.HTTPException as exc:  # 413 from client_max_size, and the like
            status = exc.status
            if status == 413:
                return problem(413, f"body larger than {self.settings.ingest_max_body_bytes} bytes")
            raise
        finally:
            metrics.IN_FLIGHT.dec()
            metrics.requests(provider, status).inc()
            metrics.request_seconds(provider).observe(time.perf_counter() - started)
