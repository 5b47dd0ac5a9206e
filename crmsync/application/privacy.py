"""Privacy (issue 20): export and erase one person across every connected system.

The person is found by email: the tenant's customers with that address (deleted ones
too), or, once erased, the customers their tombstone names. What references them comes
with them: their jobs, their invoices and the payments of those invoices (or naming them).

**Export** gathers the canonical records with their links, their sync log and admin audit
entries, and what each connected system holds for them, read through that connection's
API (``ApiClient.fetch`` of every linked record): one JSON bundle.

**Erase** runs in three steps, in this order so that nothing the erase does comes back:

1. In one transaction: a tombstone per customer (``privacy_tombstones``, migration 0017,
   holding a hash of the email, never the email), the customers anonymised (every field
   cleared, marked deleted), their jobs' free text and site address cleared, the links'
   snapshots of both (what each system last told us, which holds the same values)
   dropped, their conflicts' values cleared, and the tenant's dead letters whose bytes
   hold the address emptied and discarded. Invoices and payments are kept whole: they
   are the tenant's accounting, and they name the customer only by its canonical id.
   Nothing goes to the outbox: step 2 is how the systems hear of it.
2. Committed, so the processor already refuses anything about the person (the provider
   reporting back the erase itself, a later webhook or backfill carrying the address):
   each system is told through its API. A linked customer is anonymised (the update the
   connector makes of cleared fields) and then deleted, which each provider does its own
   way (Stripe and Ascora delete; Xero archives, QuickBooks makes inactive, HubSpot
   archives to its recycle bin: each connector's capabilities say so, and the step's
   detail quotes them). A linked job's description and site address are cleared.
   Invoices and payments are kept (accounting systems keep them; so must we).
3. The per-system report, each step ``done``, ``kept`` (on purpose, and why) or ``failed``
   (the provider's words), recorded in the audit trail. An erase run again for the same
   address finds the erased customers through their tombstone and repeats step 2, so a
   step that failed (a provider down, a connection needing re-authorisation) is retried
   that way.

Neither writes the email to the audit trail: its entries carry the identity hash.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from connectors.calls import CallFailedError, attempt
from connectors.egress import provider_session
from connectors.registry import CAPABILITIES
from connectors.runtime import Clients, ConnectionInfo, CredentialsError
from connectors.spec import ApiClient, EntityType, RemoteRecord
from crmsync.application import records
from crmsync.application.audit_trail import audited
from crmsync.application.connection_runtime import StoredCredentials, tenant_connections
from crmsync.application.context import Context
from crmsync.application.errors import NotFoundError
from crmsync.application.models import (
    AuditEntry,
    ErasureStep,
    HeldRecord,
    PostgresErasure,
    PrivacyErasure,
    PrivacyExport,
    PrivacyRequest,
    PrivacySubject,
    RecordOut,
    SyncLogEntry,
    SystemErasure,
    SystemHolding,
)
from crmsync.common import tombstones
from crmsync.common.db import Conn
from crmsync.common.links import forget_snapshots, record_links
from schemas.errors import ProviderRuleError

T = TypeVar("T")

# Longest in-line wait for a connection's rate limit: an operator is waiting for the
# answer (outbound's CRMSYNC_OUTBOUND_MAX_RATE_WAIT_SECONDS is the same figure).
MAX_RATE_WAIT_SECONDS = 2.0
# The sync log rows an export carries at most (newest first): 30 days of a busy
# customer's events fit many times over; the bundle says when it was cut.
SYNC_LOG_LIMIT = 10_000
# What the erase leaves in the customers' and jobs' personal fields.
CUSTOMER_FIELDS_CLEARED = ("name", "email", "phone", "company", "address", "notes")
JOB_FIELDS_CLEARED = ("description", "site_address")
ACCOUNTING_KEPT = (
    "kept: an accounting record, which {provider} keeps and so do we; it names the customer,"
    " who is anonymised there"
)


@dataclass(frozen=True)
class Person:
    email: str
    identity: str
    erased: bool
    customers: list[uuid.UUID]
    jobs: list[uuid.UUID] = field(default_factory=list)
    invoices: list[uuid.UUID] = field(default_factory=list)
    payments: list[uuid.UUID] = field(default_factory=list)

    @property
    def subject(self) -> PrivacySubject:
        return PrivacySubject(email=self.email, identity=self.identity, erased=self.erased)

    def ids(self, entity_type: EntityType) -> list[uuid.UUID]:
        return {
            "customer": self.customers,
            "job": self.jobs,
            "invoice": self.invoices,
            "payment": self.payments,
        }[entity_type]


class PrivacyAudit(BaseModel):
    """What the audit trail keeps of an export or an erase: never the email."""

    identity: str
    customers: list[uuid.UUID]
    jobs: list[uuid.UUID] = Field(default_factory=list)


class SystemsAudit(BaseModel):
    identity: str
    systems: list[SystemErasure] = Field(default_factory=list)


ENTITY_TYPES: tuple[EntityType, ...] = ("customer", "job", "invoice", "payment")


async def find(conn: Conn, ctx: Context, email: str) -> Person:
    """The person: customers with this email, and those an earlier erase of it left."""
    identity = tombstones.identity_hash(ctx.tenant_id, email)
    erased = await tombstones.erased_records(conn, ctx.tenant_id, identity)
    rows = await conn.fetch(
        """
        SELECT id FROM customers
         WHERE tenant_id = $1 AND (email_normalized = $2 OR id = ANY($3::uuid[]))
         ORDER BY created_at, id
        """,
        ctx.tenant_id,
        tombstones.normalise_email(email),
        erased,
    )
    customers = [r["id"] for r in rows]
    if not customers:
        raise NotFoundError("no customer with that email in this tenant")
    jobs = await conn.fetch(
        "SELECT id FROM jobs WHERE tenant_id = $1 AND customer_id = ANY($2::uuid[])"
        " ORDER BY created_at, id",
        ctx.tenant_id,
        customers,
    )
    invoices = await conn.fetch(
        """
        SELECT id FROM invoices
         WHERE tenant_id = $1 AND (data ->> 'customer_id')::uuid = ANY($2::uuid[])
         ORDER BY created_at, id
        """,
        ctx.tenant_id,
        customers,
    )
    invoice_ids = [r["id"] for r in invoices]
    payments = await conn.fetch(
        """
        SELECT id FROM payments
         WHERE tenant_id = $1
           AND ((data ->> 'invoice_id')::uuid = ANY($2::uuid[])
                OR (data ->> 'customer_id')::uuid = ANY($3::uuid[]))
         ORDER BY created_at, id
        """,
        ctx.tenant_id,
        invoice_ids,
        customers,
    )
    return Person(
        email=tombstones.normalise_email(email),
        identity=identity,
        erased=bool(erased),
        customers=customers,
        jobs=[r["id"] for r in jobs],
        invoices=invoice_ids,
        payments=[r["id"] for r in payments],
    )


# -- the connected systems ----------------------------------------------------------------


@dataclass(frozen=True)
class Linked:
    entity_type: EntityType
    external_id: str


@dataclass
class System:
    info: ConnectionInfo
    linked: list[Linked]


async def _systems(conn: Conn, ctx: Context, person: Person) -> list[System]:
    """Every connection of the tenant with the person's records linked there, in the
    order customers, jobs, invoices, payments (the order an erase must keep)."""
    by_connection: dict[uuid.UUID, list[Linked]] = {}
    for entity_type in ENTITY_TYPES:
        for row in await record_links(
            conn, entity_type, person.ids(entity_type), tenant_id=ctx.tenant_id
        ):
            by_connection.setdefault(row["connection_id"], []).append(
                Linked(entity_type, row["external_id"])
            )
    return [
        System(info, by_connection.get(info.id, []))
        for info in await tenant_connections(conn, ctx.tenant_id)
    ]


def _unreachable(info: ConnectionInfo) -> str | None:
    """Why the connection's API cannot be asked, or None."""
    if info.provider == "internal":
        return "an internal service: it has no API to read or erase through"
    if info.connector().api is None:
        return f"{info.provider} connections have no API client"
    if info.status == "disabled":
        return "the connection is disabled: enable it and run this again"
    return None


class _Caller:
    """Provider calls for one operation: one session, one handle per connection, each call
    under the connection's breaker, rate limit and concurrency (connectors.calls)."""

    def __init__(self, conn: Conn, ctx: Context) -> None:
        self.session = provider_session(allow_private=ctx.allow_private_provider_urls)
        self.clients = Clients(StoredCredentials(conn), ctx.keyring, self.session)

    async def call(self, info: ConnectionInfo, call: Callable[[ApiClient], Awaitable[T]]) -> T:
        handle = await self.clients.get(info)
        return await attempt(handle, call, max_wait_seconds=MAX_RATE_WAIT_SECONDS)

    async def close(self) -> None:
        await self.session.close()


def _failure(exc: Exception) -> str:
    if isinstance(exc, CallFailedError):
        return f"{exc.reason}: {exc.error}" if exc.error is not None else exc.reason
    return str(exc)


# Failures a provider call ends with, to report rather than raise: the call's own
# classification, the provider's rule, and credentials that cannot be read.
_CALL_FAILURES = (CallFailedError, ProviderRuleError, CredentialsError)


def _fetch(x: Linked) -> Callable[[ApiClient], Awaitable[RemoteRecord]]:
    return lambda c: c.fetch(x.entity_type, x.external_id)


def _anonymise(x: Linked, values: dict[str, Any]) -> Callable[[ApiClient], Awaitable[object]]:
    return lambda c: c.update(x.entity_type, x.external_id, values, {})


def _delete(x: Linked) -> Callable[[ApiClient], Awaitable[object]]:
    return lambda c: c.delete(x.entity_type, x.external_id)


# -- export -------------------------------------------------------------------------------


async def _held(caller: _Caller, system: System) -> SystemHolding:
    info = system.info
    reason = _unreachable(info)
    records_held: list[HeldRecord] = []
    if reason is None:
        for linked in system.linked:
            try:
                remote = await caller.call(info, _fetch(linked))
            except CallFailedError as exc:
                status: Literal["not_found", "failed"] = (
                    "not_found" if exc.reason == "not_found" else "failed"
                )
                records_held.append(
                    HeldRecord(
                        entity_type=linked.entity_type,
                        external_id=linked.external_id,
                        status=status,
                        error=_failure(exc),
                    )
                )
                continue
            except _CALL_FAILURES as exc:
                records_held.append(
                    HeldRecord(
                        entity_type=linked.entity_type,
                        external_id=linked.external_id,
                        status="failed",
                        error=_failure(exc),
                    )
                )
                continue
            records_held.append(
                HeldRecord(
                    entity_type=linked.entity_type,
                    external_id=linked.external_id,
                    status="found",
                    data=remote.data,
                    refs=dict(remote.refs),
                    deleted=remote.deleted,
                    updated_at=remote.updated_at,
                )
            )
    elif system.linked:
        records_held = [
            HeldRecord(
                entity_type=x.entity_type, external_id=x.external_id, status="failed", error=reason
            )
            for x in system.linked
        ]
    return SystemHolding(
        connection_id=info.id,
        name=info.name,
        provider=info.provider,
        records=records_held,
        note=reason,
    )


async def _sync_log(
    conn: Conn, ctx: Context, ids: list[uuid.UUID]
) -> tuple[list[SyncLogEntry], bool]:
    rows = await conn.fetch(
        """
        SELECT id, connection_id, direction, entity_type, entity_id, external_id, outcome,
               latency_ms, error, created_at, rule
          FROM sync_log
         WHERE tenant_id = $1 AND entity_id = ANY($2::uuid[])
         ORDER BY id DESC
         LIMIT $3
        """,
        ctx.tenant_id,
        ids,
        SYNC_LOG_LIMIT + 1,
    )
    return [SyncLogEntry(**dict(r)) for r in rows[:SYNC_LOG_LIMIT]], len(rows) > SYNC_LOG_LIMIT


async def _audit_log(conn: Conn, ctx: Context, person: Person) -> list[AuditEntry]:
    ids = [*person.customers, *person.jobs, *person.invoices, *person.payments]
    rows = await conn.fetch(
        """
        SELECT id, at, actor, action, target_type, target_id, change
          FROM admin_audit_log
         WHERE tenant_id = $1
           AND (target_id = ANY($2::uuid[])
                OR (target_type = 'privacy' AND change ->> 'identity' = $3))
         ORDER BY id DESC
        """,
        ctx.tenant_id,
        ids,
        person.identity,
    )
    return [AuditEntry(**dict(r)) for r in rows]


@audited("privacy.export")
async def _exported(
    conn: Conn, ctx: Context, entry: PrivacyAudit, *, customer_id: uuid.UUID
) -> None:
    """The audit row of an export (the export itself writes nothing else)."""


async def export(conn: Conn, ctx: Context, body: PrivacyRequest, *, now: datetime) -> PrivacyExport:
    """One JSON bundle of what crmsync and every connected system hold for the person."""
    person = await find(conn, ctx, body.email)
    found: dict[EntityType, list[RecordOut]] = {
        t: await records.by_ids(conn, ctx, t, person.ids(t)) for t in ENTITY_TYPES
    }
    log, truncated = await _sync_log(
        conn, ctx, [*person.customers, *person.jobs, *person.invoices, *person.payments]
    )
    audit = await _audit_log(conn, ctx, person)
    caller = _Caller(conn, ctx)
    try:
        systems = [await _held(caller, s) for s in await _systems(conn, ctx, person)]
    finally:
        await caller.close()
    await _exported(
        conn,
        ctx,
        PrivacyAudit(identity=person.identity, customers=person.customers),
        customer_id=person.customers[0],
    )
    return PrivacyExport(
        subject=person.subject,
        exported_at=now,
        customers=found["customer"],
        jobs=found["job"],
        invoices=found["invoice"],
        payments=found["payment"],
        sync_log=log,
        sync_log_truncated=truncated,
        audit_log=audit,
        systems=systems,
    )


# -- erase --------------------------------------------------------------------------------


def _count(status: str) -> int:
    """The row count of a command status ("UPDATE 3")."""
    return int(status.rsplit(" ", 1)[-1])


@audited("privacy.erase")
async def _erase_postgres(
    conn: Conn,
    ctx: Context,
    entry: PrivacyAudit,
    *,
    customer_id: uuid.UUID,
    email: str,
    now: datetime,
) -> PostgresErasure:
    """Step 1, one transaction (``audited`` opens it, and records ``entry``; ``email`` is
    recorded redacted, as every email field is)."""
    await tombstones.add(conn, ctx.tenant_id, entry.customers, entry.identity, erased_by=ctx.actor)
    customers = await conn.execute(
        """
        UPDATE customers
           SET data = '{}'::jsonb, field_meta = '{}'::jsonb,
               deleted_at = coalesce(deleted_at, $3), updated_at = $3
         WHERE tenant_id = $1 AND id = ANY($2::uuid[])
        """,
        ctx.tenant_id,
        entry.customers,
        now,
    )
    jobs = await conn.execute(
        """
        UPDATE jobs
           SET data = data - $3::text[], field_meta = field_meta - $3::text[], updated_at = $4
         WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND data ?| $3::text[]
        """,
        ctx.tenant_id,
        entry.jobs,
        list(JOB_FIELDS_CLEARED),
        now,
    )
    links = await forget_snapshots(conn, "customer", entry.customers, tenant_id=ctx.tenant_id)
    links += await forget_snapshots(conn, "job", entry.jobs, tenant_id=ctx.tenant_id)
    conflicts = await conn.execute(
        """
        UPDATE conflicts
           SET current_value = NULL, incoming_value = NULL,
               resolved_at = coalesce(resolved_at, $3),
               resolution = coalesce(resolution, '{"erased": true}'::jsonb)
         WHERE tenant_id = $1 AND entity_type IN ('customer', 'job')
           AND entity_id = ANY($2::uuid[])
        """,
        ctx.tenant_id,
        [*entry.customers, *entry.jobs],
        now,
    )
    # Changes committed before the erase and not published yet would carry the values on
    # to records.changed: they leave without them (outbound pushes the record as it is now).
    outbox = await conn.execute(
        """
        UPDATE outbox
           SET payload = (CASE entity_type
                   WHEN 'customer' THEN jsonb_set(payload::jsonb, '{state}', '{}'::jsonb)
                   ELSE payload::jsonb #- '{state,description}' #- '{state,site_address}'
               END)::json
         WHERE tenant_id = $1 AND entity_type IN ('customer', 'job')
           AND entity_id = ANY($2::uuid[])
        """,
        ctx.tenant_id,
        [*entry.customers, *entry.jobs],
    )
    # The bytes as received, searched for the address as text: a provider's envelope
    # whose body is base64-encoded is not found this way (see the README).
    dead_letters = await conn.execute(
        """
        UPDATE dead_letters
           SET payload = ''::bytea, detail = 'payload erased by a privacy erase',
               discarded_at = coalesce(discarded_at, $3)
         WHERE tenant_id = $1 AND strpos(lower(encode(payload, 'escape')), $2) > 0
        """,
        ctx.tenant_id,
        tombstones.normalise_email(email),
        now,
    )
    return PostgresErasure(
        customers_anonymised=_count(customers),
        jobs_anonymised=_count(jobs),
        invoices_kept=0,
        payments_kept=0,
        links_cleared=links,
        conflicts_cleared=_count(conflicts),
        outbox_cleared=_count(outbox),
        dead_letters_cleared=_count(dead_letters),
    )


def _anonymous_customer(external_id: str) -> dict[str, Any]:
    """The values an anonymised customer holds at a provider: fields cleared, and a name
    that names nobody, unique per record (Xero and QuickBooks refuse two contacts of one
    name)."""
    values: dict[str, Any] = dict.fromkeys(CUSTOMER_FIELDS_CLEARED)
    values["name"] = "Erased " + uuid.uuid5(uuid.NAMESPACE_URL, external_id).hex[:10]
    return values


def _delete_note(provider: str, entity_type: EntityType) -> str:
    rows = CAPABILITIES.get(provider, {})
    row = rows.get(entity_type)
    why = row.delete.why if row is not None else ""
    return f"deleted ({why})" if why else "deleted"


async def _step(
    caller: _Caller,
    info: ConnectionInfo,
    linked: Linked,
    *,
    action: Literal["delete", "anonymise"],
    call: Callable[[ApiClient], Awaitable[object]],
    done: str,
) -> ErasureStep:
    try:
        await caller.call(info, call)
    except CallFailedError as exc:
        if action == "delete" and exc.reason == "not_found":
            return ErasureStep(
                entity_type=linked.entity_type,
                external_id=linked.external_id,
                action=action,
                status="done",
                detail="already gone",
            )
        status: Literal["kept", "failed"] = "kept" if exc.reason == "unsupported" else "failed"
        detail = _failure(exc)
        return ErasureStep(
            entity_type=linked.entity_type,
            external_id=linked.external_id,
            action=action,
            status=status,
            detail=detail,
        )
    except _CALL_FAILURES as exc:
        return ErasureStep(
            entity_type=linked.entity_type,
            external_id=linked.external_id,
            action=action,
            status="failed",
            detail=_failure(exc),
        )
    return ErasureStep(
        entity_type=linked.entity_type,
        external_id=linked.external_id,
        action=action,
        status="done",
        detail=done,
    )


async def _erase_in(caller: _Caller, system: System) -> SystemErasure:
    info = system.info
    reason = _unreachable(info)
    steps: list[ErasureStep] = []
    api = info.connector().api if reason is None else None
    for linked in system.linked:
        x = linked
        if api is None:
            steps.append(
                ErasureStep(
                    entity_type=x.entity_type,
                    external_id=x.external_id,
                    action="keep",
                    status="failed" if info.provider != "internal" else "kept",
                    detail=reason or "no API",
                )
            )
        elif x.entity_type == "customer":
            steps.append(
                await _step(
                    caller,
                    info,
                    x,
                    action="anonymise",
                    call=_anonymise(x, _anonymous_customer(x.external_id)),
                    done="name, email, phone, company, address and notes cleared",
                )
            )
            if "customer" in api.deletable:
                steps.append(
                    await _step(
                        caller,
                        info,
                        x,
                        action="delete",
                        call=_delete(x),
                        done=_delete_note(info.provider, "customer"),
                    )
                )
            else:
                steps.append(
                    ErasureStep(
                        entity_type="customer",
                        external_id=x.external_id,
                        action="delete",
                        status="kept",
                        detail=f"{info.provider} cannot delete a customer: anonymised only",
                    )
                )
        elif x.entity_type == "job":
            steps.append(
                await _step(
                    caller,
                    info,
                    x,
                    action="anonymise",
                    call=_anonymise(x, dict.fromkeys(JOB_FIELDS_CLEARED)),
                    done="description and site address cleared",
                )
            )
        else:
            steps.append(
                ErasureStep(
                    entity_type=x.entity_type,
                    external_id=x.external_id,
                    action="keep",
                    status="kept",
                    detail=ACCOUNTING_KEPT.format(provider=info.provider),
                )
            )
    return SystemErasure(
        connection_id=info.id, name=info.name, provider=info.provider, steps=steps, note=reason
    )


@audited("privacy.erase_systems")
async def _erased_in_systems(
    conn: Conn, ctx: Context, entry: SystemsAudit, *, customer_id: uuid.UUID
) -> None:
    """The audit row of step 2's outcome, per system (the steps were the providers')."""


async def erase(conn: Conn, ctx: Context, body: PrivacyRequest, *, now: datetime) -> PrivacyErasure:
    """Erase the person from Postgres and from every connected system that allows it."""
    person = await find(conn, ctx, body.email)
    postgres = await _erase_postgres(
        conn,
        ctx,
        PrivacyAudit(identity=person.identity, customers=person.customers, jobs=person.jobs),
        customer_id=person.customers[0],
        email=person.email,
        now=now,
    )
    postgres = postgres.model_copy(
        update={"invoices_kept": len(person.invoices), "payments_kept": len(person.payments)}
    )
    caller = _Caller(conn, ctx)
    try:
        systems = [
            await _erase_in(caller, s) for s in await _systems(conn, ctx, person) if s.linked
        ]
    finally:
        await caller.close()
    await _erased_in_systems(
        conn,
        ctx,
        SystemsAudit(identity=person.identity, systems=systems),
        customer_id=person.customers[0],
    )
    return PrivacyErasure(
        subject=PrivacySubject(email=person.email, identity=person.identity, erased=True),
        erased_at=now,
        customers=person.customers,
        postgres=postgres,
        systems=systems,
        complete=all(step.status != "failed" for s in systems for step in s.steps),
    )
