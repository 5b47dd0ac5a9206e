"""The admin API's payloads. The OpenAPI document is generated from these models.

Requests forbid unknown fields (a typo is a 422, not a silently ignored setting);
responses are what the operations return, serialised with ``model_dump(mode="json")``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Generic, Literal, Self, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel, model_validator

from connectors.registry import PROVIDERS
from crmsync.application.ledger import Ledger
from crmsync.application.pagination import DEFAULT_LIMIT, MAX_LIMIT
from crmsync.common.apikeys import Scope
from schemas.base import AwareDatetime
from schemas.changes import EntityType
from schemas.records import Email

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors and pages ---------------------------------------------------------------------


class FieldError(BaseModel):
    loc: str = Field(description="JSON pointer into the request: /body/…, /query/…, /path/…")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None, Field(max_length=500, description="`next_cursor` of the previous page.")
]


class PageQuery(Strict):
    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor = None


# -- connections --------------------------------------------------------------------------

Direction = Literal["in", "out", "both"]
PolicyKey = Literal["default", "customer", "job", "invoice", "payment"]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w .-]*$")]
BaseUrl = Annotated[str, Field(min_length=8, max_length=500, pattern=r"^https?://[^\s]+$")]


class ConflictPolicyIn(Strict):
    kind: Literal["newest_wins", "source_priority", "manual"]
    priority: list[UUID] = Field(
        default_factory=list, max_length=50, description="source_priority: connections, best first"
    )


class RateLimitIn(Strict):
    rate: float = Field(gt=0, le=100_000, description="Calls allowed per `per_seconds`.")
    per_seconds: float = Field(1.0, gt=0, le=86_400)
    burst: int = Field(1, ge=1, le=100_000)


class ConnectionSettingsIn(Strict):
    """Each field given replaces that setting; null resets it to the default."""

    direction: Direction | None = Field(
        None, description="in: only receive; out: only push; both (default)."
    )
    entity_types: list[EntityType] | None = Field(
        None, min_length=1, description="Entity types synced (default: all the provider has)."
    )
    conflict_policy: dict[PolicyKey, ConflictPolicyIn] | None = None
    field_mapping: dict[str, JsonValue] | None = Field(
        None, description="generic connections: the declarative mapping (connectors/generic)."
    )
    rate_limit: RateLimitIn | None = Field(
        None, description="Overrides the provider's documented limit."
    )
    max_concurrency: int | None = Field(None, ge=1, le=100)
    provider_settings: dict[str, JsonValue] | None = Field(
        None,
        description="Provider-specific keys (xero_tenant_id, realm_id, deal_pipeline, …); "
        "merged into the settings, a null value removes a key.",
    )


class ApiKeyCredentials(Strict):
    type: Literal["api_key"]
    token: str = Field(min_length=1, max_length=4096)


class OAuthCredentials(Strict):
    type: Literal["oauth2"]
    access_token: str = Field(min_length=1, max_length=8192)
    refresh_token: str = Field(min_length=1, max_length=8192)
    expires_at: AwareDatetime
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: str = Field(min_length=1, max_length=500)
    token_url: BaseUrl


class CredentialsIn(RootModel[ApiKeyCredentials | OAuthCredentials]):
    """API credentials of the provider; stored encrypted and never returned."""

    root: Annotated[ApiKeyCredentials | OAuthCredentials, Field(discriminator="type")]


class ConnectionCreate(Strict):
    provider: str = Field(
        min_length=1,
        max_length=64,
        description="Provider slug.",
        json_schema_extra={"enum": list(PROVIDERS)},
    )
    name: Name | None = Field(None, description="Unique per tenant (default: the provider).")
    webhook_secret: str | None = Field(
        None, min_length=8, max_length=500, description="The provider's secret (else generated)."
    )
    base_url: BaseUrl | None = None
    credentials: (
        Annotated[ApiKeyCredentials | OAuthCredentials, Field(discriminator="type")] | None
    ) = None
    generic_config: dict[str, JsonValue] | None = Field(
        None, description="generic connections: the signature scheme (connectors/generic)."
    )
    settings: ConnectionSettingsIn = Field(default_factory=ConnectionSettingsIn)


class ConnectionUpdate(ConnectionSettingsIn):
    name: Name | None = None
    base_url: BaseUrl | None = None


class ConnectionQuery(PageQuery):
    provider: str | None = Field(None, max_length=64)
    status: Literal["active", "disabled", "needs_reauth"] | None = None
    name: Name | None = Field(
        None, description="The connection of this name (the CLI's TENANT/NAME)."
    )


ConnectionStatus = Literal["active", "disabled", "needs_reauth"]


class ConnectionOut(Out):
    id: UUID
    provider: str
    name: str
    status: ConnectionStatus
    base_url: str | None
    settings: dict[str, JsonValue]
    has_credentials: bool
    webhook_url: str | None = Field(description="Where the provider sends webhooks.")
    changes_url: str | None = Field(description="internal connections: POST changes here.")
    created_at: datetime
    updated_at: datetime
    last_reconciled_at: datetime | None
    handshakes_until: datetime | None = Field(
        None,
        description="Until when it takes its provider's subscription handshakes (a mapping"
        " with webhook.verification: FreshBooks); each code the provider accepts back then"
        " verifies its webhooks too.",
    )


class ConnectionCreated(ConnectionOut):
    webhook_secret: str | None = Field(description="Shown once; stored encrypted.")
    api_key: str | None = Field(description="internal connections: shown once; stored hashed.")


class SecretRotate(Strict):
    secret: str | None = Field(
        None, min_length=8, max_length=500, description="The provider's new secret, else generated."
    )
    overlap_seconds: int = Field(
        86_400, ge=0, le=30 * 86_400, description="How long the old secrets keep verifying."
    )


class HandshakeWindow(Strict):
    seconds: int = Field(
        3_600,
        ge=0,
        le=7 * 86_400,
        description="How long from now it takes handshakes (0 ends the window).",
    )


class SecretRotated(Out):
    connection_id: UUID
    webhook_secret: str = Field(description="Shown once; stored encrypted.")
    previous_expire_at: datetime


class ConnectionHealth(Out):
    connection_id: UUID
    status: ConnectionStatus
    needs_reauth: bool
    last_webhook_at: datetime | None = Field(description="Last inbound event processed.")
    last_push_at: datetime | None
    window_seconds: int
    events_in_window: int
    errors_in_window: int
    error_rate: float = Field(description="errors / events over the window; 0 with no events.")
    circuit: Literal["closed", "open"] = Field(
        description="open while pushes wait on the connection's circuit breaker."
    )
    pending_pushes: int
    open_dead_letters: int
    credentials: Literal["none", "api_key", "oauth2", "unreadable"]
    token_expires_at: datetime | None
    paused_inbound: bool = Field(
        description="A pause or freeze window holds its webhooks back now (they wait, unapplied)."
    )
    paused_outbound: bool = Field(description="A pause or freeze window holds its pushes now.")


# -- records ------------------------------------------------------------------------------


class RecordQuery(PageQuery):
    connection: UUID | None = Field(None, description="Linked to this connection.")
    external_id: str | None = Field(
        None, min_length=1, max_length=200, description="Its id in a connection."
    )
    updated_since: AwareDatetime | None = None
    include_deleted: bool = False


class CustomerQuery(RecordQuery):
    email: str | None = Field(None, min_length=1, max_length=320)


class InvoiceQuery(RecordQuery):
    number: str | None = Field(None, min_length=1, max_length=200)
    status: str | None = Field(None, min_length=1, max_length=50)


class LinkOut(Out):
    connection_id: UUID
    provider: str
    external_id: str
    last_pushed_version: int | None
    remote_updated_at: datetime | None
    updated_at: datetime


class FieldSource(Out):
    source: str = Field(
        description="Who set the field: a connection's id, or `admin` (a resolved conflict)."
    )
    ts: datetime = Field(description="When, by the source's own clock.")


class RecordOut(Out):
    id: UUID
    entity_type: EntityType
    version: int
    data: dict[str, JsonValue]
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    links: list[LinkOut]
    provenance: dict[str, FieldSource] = Field(
        default_factory=dict, description="Per field of `data`: which system set it, and when."
    )


# -- sync log -----------------------------------------------------------------------------


class SyncLogQuery(PageQuery):
    connection: UUID | None = None
    direction: Literal["in", "out"] | None = None
    outcome: str | None = Field(None, min_length=1, max_length=50)
    rule: str | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="Inbound events decided by this apply rule (e.g. earlier_push).",
    )
    entity_type: EntityType | None = None
    entity_id: UUID | None = Field(None, description="One record's events.")
    since: AwareDatetime | None = None


class SyncLogEntry(Out):
    id: int
    connection_id: UUID | None
    direction: Literal["in", "out"]
    entity_type: str | None
    entity_id: UUID | None
    external_id: str | None
    outcome: str
    latency_ms: int | None
    error: str | None
    created_at: datetime
    rule: str | None = Field(
        None,
        description="Inbound: the processor's apply rule that decided the change, finer than"
        " its outcome (an echo of our last push is `echo`, of an earlier push read back after"
        " a later one `earlier_push`); null where no rule ran, and outbound.",
    )


class SyncLogSummaryQuery(Strict):
    connection: UUID | None = None
    since: AwareDatetime | None = Field(None, description="Default: the last 24 hours.")


class OutcomeCount(Out):
    direction: Literal["in", "out"]
    outcome: str
    count: int
    p95_latency_ms: int | None


class SyncLogSummary(Out):
    since: datetime
    outcomes: list[OutcomeCount]


# -- the ledger ----------------------------------------------------------------------------


class LedgerQuery(Strict):
    connection: UUID | None = None
    since: AwareDatetime | None = Field(None, description="Default: the last 24 hours.")
    until: AwareDatetime | None = Field(None, description="Default: now.")


class InboundLedger(Out):
    """Events ingest accepted in the window (each item of a webhook, each change)."""

    records: int = Field(description="Kafka records accepted: webhook envelopes and changes.")
    accepted: int = Field(description="Events in them: applied + duplicates + skipped + ….")
    applied: int
    duplicates: int
    skipped: dict[str, int] = Field(
        description="Dropped on purpose, by reason: ignored_event_type, not_synced, gone, "
        "no_events."
    )
    dead_lettered: int
    in_flight: int
    unaccounted: int
    examples: list[str] = Field(description="Some unaccounted records, by Kafka coordinates.")


class OutboundLedger(Out):
    """Changes committed in the window, each against this connection as a target."""

    changes: int = Field(description="Committed changes x this target.")
    pushed: int
    skipped: dict[str, int] = Field(description="By rule: echo, settings, deleted.")
    dead_lettered: int
    pending: int
    unaccounted: int
    examples: list[str]


class ConnectionLedgerOut(Out):
    connection_id: UUID
    provider: str
    name: str
    inbound: InboundLedger
    outbound: OutboundLedger


class LedgerReport(Out):
    since: datetime | None
    until: datetime
    balanced: bool = Field(description="False when anything is unaccounted; see problems.")
    in_flight: int = Field(description="Events in flight plus pushes pending.")
    problems: list[str]
    notes: list[str] = Field(description="What limits the ledger without unbalancing it.")
    connections: list[ConnectionLedgerOut]

    @classmethod
    def of(cls, ledger: Ledger) -> LedgerReport:
        return cls(
            since=ledger.since,
            until=ledger.until,
            balanced=ledger.balanced,
            in_flight=ledger.in_flight,
            problems=ledger.problems(),
            notes=ledger.notes,
            connections=[
                ConnectionLedgerOut(
                    connection_id=c.connection_id,
                    provider=c.provider,
                    name=c.name,
                    inbound=InboundLedger(
                        records=c.inbound.records,
                        accepted=c.inbound.accepted,
                        applied=c.inbound.applied,
                        duplicates=c.inbound.duplicates,
                        skipped=dict(c.inbound.skipped),
                        dead_lettered=c.inbound.dead_lettered,
                        in_flight=c.inbound.in_flight,
                        unaccounted=c.inbound.unaccounted,
                        examples=c.inbound.examples,
                    ),
                    outbound=OutboundLedger(
                        changes=c.outbound.changes,
                        pushed=c.outbound.pushed,
                        skipped=dict(c.outbound.skipped),
                        dead_lettered=c.outbound.dead_lettered,
                        pending=c.outbound.pending,
                        unaccounted=c.outbound.unaccounted,
                        examples=c.outbound.examples,
                    ),
                )
                for c in ledger.connections
            ],
        )


# -- dead letters -------------------------------------------------------------------------

Stage = Literal["ingest", "processor", "hydrate", "outbound"]


class DeadLetterQuery(PageQuery):
    stage: Stage | None = None
    reason: str | None = Field(None, min_length=1, max_length=100)
    connection: UUID | None = None
    state: Literal["open", "redriven", "discarded", "all"] = "open"


class DeadLetterOut(Out):
    id: UUID
    stage: Stage
    reason: str
    detail: str | None
    connection_id: UUID | None
    topic: str | None
    partition: int | None
    offset: int | None
    payload_bytes: int
    created_at: datetime
    redriven_at: datetime | None
    discarded_at: datetime | None


class DeadLetterDetail(DeadLetterOut):
    payload_text: str | None = Field(description="The payload, when it is UTF-8 text.")
    payload_base64: str


class RedriveMany(Strict):
    ids: list[UUID] | None = Field(None, min_length=1, max_length=1000)
    stage: Stage | None = None
    reason: str | None = Field(None, min_length=1, max_length=100)
    connection: UUID | None = None
    limit: int = Field(100, ge=1, le=1000, description="Most dead letters redriven at once.")


class RedriveFailure(Out):
    id: UUID
    reason: str


class RedriveResult(Out):
    redriven: list[UUID]
    failed: list[RedriveFailure]


# -- replay -------------------------------------------------------------------------------


class ReplayRequest(Strict):
    connection: UUID
    since: AwareDatetime | None = Field(None, description="Replay events stored since then…")
    from_offset: int | None = Field(None, ge=0, description="…or from this offset on.")
    partition: int | None = Field(None, ge=0, description="Only this partition (with offsets).")
    max_records: int = Field(10_000, ge=1, le=100_000, description="Most envelopes re-produced.")

    @model_validator(mode="after")
    def _one_start(self) -> Self:
        if (self.since is None) == (self.from_offset is None):
            raise ValueError("give exactly one of since and from_offset")
        return self


class ReplayPartition(Out):
    partition: int
    start_offset: int
    end_offset: int


class ReplayResult(Out):
    connection_id: UUID
    topic: str
    scanned: int
    matched: int
    produced: int
    truncated: bool = Field(description="max_records was reached before the end.")
    partitions: list[ReplayPartition]


# -- sync jobs ----------------------------------------------------------------------------

SyncKind = Literal["backfill", "reconcile", "full_reconcile"]
SyncStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class SyncJobCreate(Strict):
    connection: UUID
    kind: SyncKind
    entity_types: list[EntityType] | None = Field(
        None, min_length=1, description="Default: every type the connection syncs."
    )
    modified_since: AwareDatetime | None = Field(
        None, description="reconcile: default the connection's last reconciliation."
    )


class SyncJobQuery(PageQuery):
    connection: UUID | None = None
    status: SyncStatus | None = None
    kind: SyncKind | None = None


class SyncJobOut(Out):
    id: UUID
    connection_id: UUID
    kind: SyncKind
    entity_types: list[str]
    status: SyncStatus
    modified_since: datetime | None
    progress: dict[str, JsonValue] = Field(
        description="Per entity type: done and records seen (the runner's checkpoint)."
    )
    records_seen: int
    records_changed: int
    records_deleted: int
    error: str | None
    cancel_requested: bool
    requested_by: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None


# -- conflicts ----------------------------------------------------------------------------


class ConflictQuery(PageQuery):
    state: Literal["open", "resolved", "all"] = "open"
    entity_type: EntityType | None = None
    entity_id: UUID | None = None


class ConflictOut(Out):
    id: UUID
    entity_type: str
    entity_id: UUID
    field: str
    current_value: JsonValue
    incoming_value: JsonValue
    incoming_connection_id: UUID | None
    incoming_source_ts: datetime | None
    created_at: datetime
    resolved_at: datetime | None
    resolution: dict[str, JsonValue] | None


class ConflictResolve(Strict):
    choose: Literal["current", "incoming", "value"]
    value: JsonValue = Field(None, description="choose=value: the value to keep.")


# -- API keys -----------------------------------------------------------------------------


class ApiKeyCreate(Strict):
    scope: Scope
    connection: UUID | None = Field(None, description="publish keys: the internal connection.")
    expires_at: AwareDatetime | None = None


class ApiKeyQuery(PageQuery):
    include_revoked: bool = False


class TenantOut(Out):
    id: UUID
    slug: str = Field(description="What the CLI's --tenant and TENANT/NAME name.")
    name: str
    created_at: datetime


class ApiKeyOut(Out):
    id: UUID
    scope: Scope
    key_prefix: str
    connection_id: UUID | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="Shown once; stored as a SHA-256 hash.")


class ApiKeyRotate(Strict):
    overlap_seconds: int = Field(
        3600, ge=0, le=30 * 86_400, description="How long the old key keeps working."
    )


# -- audit trail --------------------------------------------------------------------------


class AuditLogQuery(PageQuery):
    actor: str | None = Field(
        None, min_length=1, max_length=200, description='"api-key:<id>" or "cli:<OS user>".'
    )
    action: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description='An action ("connection.update") or a target type ("connection").',
    )
    target: UUID | None = Field(None, description="The id of what was changed.")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None


class AuditEntry(Out):
    id: int
    at: datetime
    actor: str
    action: str
    target_type: str
    target_id: UUID | None
    change: JsonValue = Field(description="The request, secrets redacted.")


class ApiKeyUsageDay(Out):
    day: date
    requests: int


class ApiKeyDetail(ApiKeyOut):
    usage: list[ApiKeyUsageDay] = Field(
        description="Requests per UTC day over the last 30 days, newest first (days with none"
        " are left out); counted in memory and written every few seconds."
    )


# -- notifications ------------------------------------------------------------------------

NotificationType = Literal[
    "connection.needs_reauth",
    "connection.circuit_open",
    "connection.dead_letters",
    "sync_job.failed",
    "quota.reached",
    "test",
]


class NotificationEndpointCreate(Strict):
    url: Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")]
    description: str | None = Field(None, max_length=200)
    event_types: list[NotificationType] = Field(
        default_factory=list, max_length=10, description="Empty: every type."
    )


class NotificationEndpointOut(Out):
    id: UUID
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    created_at: datetime


class NotificationEndpointCreated(NotificationEndpointOut):
    secret: str = Field(
        description="Standard Webhooks signing secret (whsec_…): shown once, stored encrypted."
    )


class NotificationDeliveryOut(Out):
    id: UUID
    endpoint_id: UUID
    event_type: str
    payload: JsonValue
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class NotificationDeliveryQuery(PageQuery):
    status: Literal["pending", "delivered", "failed"] | None = None


# -- pauses and freeze windows ------------------------------------------------------------


class PauseRequest(Strict):
    direction: Direction = Field(
        "both", description="in: stop applying its webhooks; out: stop pushing to it; both."
    )
    until: AwareDatetime | None = Field(None, description="Resume by itself then (else: resume).")
    reason: str | None = Field(None, max_length=200)


class ResumeRequest(Strict):
    direction: Direction = Field("both", description="Which pauses in force to end.")


class PauseOut(Out):
    id: UUID
    connection_id: UUID | None = Field(description="null: every connection of the tenant.")
    inbound: bool
    outbound: bool
    starts_at: datetime
    ends_at: datetime | None
    reason: str | None
    kind: Literal["pause", "freeze_window"]
    created_by: str
    created_at: datetime


class ResumeResult(Out):
    ended: list[PauseOut] = Field(description="The pauses and windows in force that ended now.")


class FreezeWindowCreate(Strict):
    connection: UUID | None = Field(None, description="null: every connection of the tenant.")
    direction: Direction = "both"
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class FreezeWindowQuery(PageQuery):
    connection: UUID | None = None
    include_past: bool = False


# -- privacy: export and erase one person ------------------------------------------------


class PrivacyRequest(Strict):
    email: Email = Field(
        description="The person's email address, matched as customers are (trimmed, lower-cased)."
    )


class PrivacySubject(Out):
    email: str
    identity: str = Field(
        description="What the tombstone keeps instead of the email: SHA-256 of the tenant"
        " and the normalised email."
    )
    erased: bool = Field(description="An earlier erase left a tombstone for this identity.")


class HeldRecord(Out):
    """One record a connected system holds for the person, read through its API."""

    entity_type: EntityType
    external_id: str
    status: Literal["found", "not_found", "failed"]
    data: dict[str, JsonValue] | None = Field(
        None, description="The record as the system holds it, in canonical fields."
    )
    refs: dict[str, str] = Field(default_factory=dict)
    deleted: bool | None = None
    updated_at: datetime | None = None
    error: str | None = None


class SystemHolding(Out):
    connection_id: UUID
    name: str
    provider: str
    records: list[HeldRecord]
    note: str | None = Field(None, description="Why the system was not read, when it was not.")


class PrivacyExport(Out):
    subject: PrivacySubject
    exported_at: datetime
    customers: list[RecordOut]
    jobs: list[RecordOut]
    invoices: list[RecordOut]
    payments: list[RecordOut]
    sync_log: list[SyncLogEntry] = Field(description="Events of those records, newest first.")
    sync_log_truncated: bool
    audit_log: list[AuditEntry] = Field(
        description="Admin changes of those records, and earlier exports and erasures."
    )
    systems: list[SystemHolding] = Field(
        description="What each connected system holds for the person, read through its API."
    )


class ErasureStep(Out):
    entity_type: EntityType
    external_id: str
    action: Literal["delete", "anonymise", "keep"]
    status: Literal["done", "kept", "failed"] = Field(
        description="done; kept: left on purpose (detail says why); failed: try again later."
    )
    detail: str


class SystemErasure(Out):
    connection_id: UUID
    name: str
    provider: str
    steps: list[ErasureStep]
    note: str | None = None


class PostgresErasure(Out):
    customers_anonymised: int
    jobs_anonymised: int
    invoices_kept: int
    payments_kept: int
    links_cleared: int
    conflicts_cleared: int
    outbox_cleared: int = Field(description="Changes not published yet, their values removed.")
    dead_letters_cleared: int


class PrivacyErasure(Out):
    subject: PrivacySubject
    erased_at: datetime
    customers: list[UUID] = Field(description="The canonical customers, now anonymised shells.")
    postgres: PostgresErasure
    systems: list[SystemErasure]
    complete: bool = Field(description="No step failed; run the erase again to retry those.")


# -- quotas -------------------------------------------------------------------------------

# The largest limits accepted: far beyond any tenant, small enough for PostgreSQL's types.
_MAX_CONNECTIONS = 100_000
_MAX_EVENTS_PER_MINUTE = 100_000_000
_MAX_RECORDS = 10**12


class QuotaLimits(Strict):
    """Limits of a tenant to change (PATCH): only the fields given; null: no limit."""

    max_connections: int | None = Field(
        None, ge=0, le=_MAX_CONNECTIONS, description="Connections, whatever their status."
    )
    events_per_minute: int | None = Field(
        None,
        ge=0,
        le=_MAX_EVENTS_PER_MINUTE,
        description="Change events per calendar minute (UTC), webhooks and internal changes"
        " alike: internal changes past it get 429, webhooks are accepted and notified.",
    )
    max_records: int | None = Field(
        None,
        ge=0,
        le=_MAX_RECORDS,
        description="Canonical records not deleted: internal changes that would create one"
        " more get 409; provider records are applied and notified.",
    )


class QuotaLimitsSet(QuotaLimits):
    """Every limit of a tenant (PUT): each field required; null: no limit."""

    max_connections: int | None = Field(..., ge=0, le=_MAX_CONNECTIONS)
    events_per_minute: int | None = Field(..., ge=0, le=_MAX_EVENTS_PER_MINUTE)
    max_records: int | None = Field(..., ge=0, le=_MAX_RECORDS)


class QuotaState(Out):
    limit: int | None = Field(description="null: no limit.")
    usage: int


class EventsQuotaState(QuotaState):
    window_start: datetime = Field(description="The current minute: `usage` counts events in it.")
    accepted_over_limit: int = Field(description="Webhooks accepted past the limit this minute.")
    refused: int = Field(description="Internal change events refused (429) this minute.")
    last_minute: int = Field(description="Events in the minute before.")


class QuotasOut(Out):
    connections: QuotaState
    events_per_minute: EventsQuotaState
    records: QuotaState
    updated_at: datetime | None = Field(description="When the limits were last set (null: never).")
    updated_by: str | None


# -- sample webhooks (crmsync trigger) ----------------------------------------------------


class TriggerRequest(Strict):
    event: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.]+$",
        description="A sample event of the connection's provider (GET /v1/webhook-samples).",
    )
    provider: str | None = Field(
        None,
        max_length=50,
        description="The provider the caller means: refused if not the connection's.",
    )


class TriggerResult(Out):
    provider: str
    event: str
    url: str = Field(description="The connection's webhook URL the sample was sent to.")
    delivery_id: str = Field(description="The id the processor deduplicates this delivery on.")
    ingest_status: int = Field(description="Ingest's answer: 2xx when it took the webhook.")
    ingest_answer: JsonValue = Field(description="Ingest's body (problem details on a refusal).")


class WebhookSamples(Out):
    providers: dict[str, list[str]] = Field(description="Each provider's sample events.")
