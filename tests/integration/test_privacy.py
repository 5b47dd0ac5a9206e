"""Privacy export and erase of one person (issue 20) on the real PostgreSQL, with a real
Stripe simulator over HTTP as a connected system: the bundle holds Postgres and provider
data; the erase anonymises Postgres, deletes at Stripe, reports per system, and leaves a
tombstone the processor refuses the person by; the audit trail never holds the email.
The whole stack (ingest, processor, outbound, webhooks) is tests/e2e/test_privacy_stack.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from connectors.registry import connector
from connectors.simkit import Fault
from connectors.spec import RecordMapper
from crmsync.application import privacy
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.errors import NotFoundError
from crmsync.application.models import PrivacyRequest
from crmsync.common.connections import CreatedConnection
from crmsync.common.crypto import KeyRing
from crmsync.common.tombstones import identity_hash
from crmsync.demo import sims
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from tests.e2e.sync_harness import SimulatedCrm, start_simulator
from tests.integration.connections import lone_connection
from tests.integration.erp_to_ascora import erp_and_simulator
from tests.integration.test_admin_api import Admin, admin
from tests.integration.test_references import TOPIC, at, change

__all__ = ["admin"]  # a fixture, imported for pytest


def connector_of(crm: SimulatedCrm) -> RecordMapper:
    mapper = connector(crm.provider).mapper
    assert mapper is not None
    return mapper


EMAIL = "Ada.Lovelace@Example.com"
NORMALISED = EMAIL.lower()


@dataclass
class Person:
    pool: asyncpg.Pool
    ctx: Context
    erp: CreatedConnection  # an internal service: no API
    stripe: CreatedConnection  # the Stripe simulator
    crm: SimulatedCrm
    customer_id: uuid.UUID
    stripe_id: str  # the customer's id at Stripe


async def _tenant_with_a_person(
    pool: asyncpg.Pool, crm: SimulatedCrm, processor: Processor
) -> Person:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    # No ingest here: the processor is fed directly.
    erp, stripe_id = await erp_and_simulator(pool, keyring, crm, "stripe")
    stripe = CreatedConnection(stripe_id, erp.tenant_id, erp.tenant, "stripe", "stripe")
    held = crm.sim.create(
        "customer", {"email": EMAIL, "name": "Ada Lovelace", "phone": "+44 20 7946 0000"}
    )
    # What Stripe's customer.created webhook brings, then the ERP's job and invoice for her.
    person_at_stripe = {"email": EMAIL, "name": "Ada Lovelace", "phone": "+44 20 7946 0000"}
    results = await processor.handle(
        TOPIC,
        [
            change(stripe, "customer", held["id"], person_at_stripe, ts=at(1)),
            change(erp, "customer", "c-1", {"email": EMAIL}, ts=at(2)),
            change(
                erp,
                "job",
                "j-1",
                {"title": "Rewire", "description": "Ada's kitchen, key under the mat"},
                refs={"customer_id": "c-1"},
                ts=at(3),
            ),
            change(
                erp,
                "invoice",
                "i-1",
                {
                    "number": "INV-7",
                    "status": "open",
                    "currency": "GBP",
                    "subtotal": 1000,
                    "tax": 0,
                    "total": 1000,
                },
                refs={"customer_id": "c-1", "job_id": "j-1"},
                ts=at(4),
            ),
        ],
    )
    # The ERP's customer is matched to Stripe's by email: linked, nothing new to apply.
    outcomes = [r.outcome if r else None for r in results]
    assert outcomes == [Outcome.APPLIED, Outcome.NOOP, Outcome.APPLIED, Outcome.APPLIED]
    customer_id = await pool.fetchval("SELECT id FROM customers")
    ctx = Context(
        tenant_id=erp.tenant_id,
        keyring=keyring,
        public_base_url="https://hooks.example.test",
        kafka=KafkaTarget("127.0.0.1:9092"),
        actor="cli:privacy-test",
        allow_private_provider_urls=True,
    )
    return Person(pool, ctx, erp, stripe, crm, customer_id, held["id"])


@pytest.fixture
async def crm() -> AsyncIterator[SimulatedCrm]:
    running = await start_simulator("stripe")
    try:
        yield running
    finally:
        await running.runner.cleanup()


@pytest.fixture
async def person(pool: asyncpg.Pool, crm: SimulatedCrm) -> Person:
    return await _tenant_with_a_person(pool, crm, Processor(pool))


async def _audit_changes(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT action, change::text AS change FROM admin_audit_log")
    return [f"{r['action']} {r['change']}" for r in rows]


# The person's links that hold our writes to them (entity_links.pushes, migration 0022).
LINKS_WITH_PUSHES = (
    "SELECT count(*) FROM entity_links"
    " WHERE entity_type IN ('customer', 'job') AND pushes <> '[]'::jsonb"
)


async def test_the_export_bundles_the_records_their_events_and_what_stripe_holds(
    person: Person,
) -> None:
    now = datetime.now(UTC)
    async with person.pool.acquire() as conn:
        bundle = await privacy.export(conn, person.ctx, PrivacyRequest(email=EMAIL), now=now)

    assert bundle.subject.email == NORMALISED
    assert bundle.subject.identity == identity_hash(person.ctx.tenant_id, EMAIL)
    assert not bundle.subject.erased
    (customer,) = bundle.customers
    assert customer.data["name"] == "Ada Lovelace"
    assert {(link.provider, link.external_id) for link in customer.links} == {
        ("stripe", person.stripe_id),
        ("internal", "c-1"),
    }
    assert [j.data["title"] for j in bundle.jobs] == ["Rewire"]
    assert [i.data["number"] for i in bundle.invoices] == ["INV-7"]
    assert {e.entity_type for e in bundle.sync_log} == {"customer", "job", "invoice"}
    assert sorted(e.outcome for e in bundle.sync_log) == ["applied"] * 3 + ["no_op"]

    systems = {s.provider: s for s in bundle.systems}
    (held,) = systems["stripe"].records
    assert held.status == "found"
    assert held.external_id == person.stripe_id
    assert held.data is not None
    assert held.data["email"] == NORMALISED
    assert held.data["phone"] == "+44 20 7946 0000"
    assert systems["internal"].note is not None
    assert "no API" in systems["internal"].note
    assert person.crm.requests("GET"), "Stripe was not read through its API"

    # The export is in the audit trail, by identity, never by address.
    audit = await _audit_changes(person.pool)
    assert any(a.startswith("privacy.export") for a in audit)
    assert bundle.subject.identity in " ".join(audit)
    assert "lovelace" not in " ".join(audit).lower()


async def test_the_erase_anonymises_postgres_deletes_at_stripe_and_reports_each_system(
    person: Person,
) -> None:
    # Our last writes to the customer at Stripe and to her job at the ERP, as the pusher
    # records them (link_pushes_after, migration 0022): hashes of states that held her
    # values, so the erase must clear them with the snapshots.
    pushed = await person.pool.fetchval(
        """
        WITH written AS (
            UPDATE entity_links
               SET pushes = link_pushes_after(link_pushes_after(pushes, 'h1', $1), 'h2', $1)
             WHERE entity_type IN ('customer', 'job') RETURNING 1
        ) SELECT count(*) FROM written
        """,
        at(5),
    )
    assert pushed == 3
    assert await person.pool.fetchval(LINKS_WITH_PUSHES) == 3
    now = datetime.now(UTC)
    async with person.pool.acquire() as conn:
        report = await privacy.erase(conn, person.ctx, PrivacyRequest(email=EMAIL), now=now)

    assert report.complete
    assert report.customers == [person.customer_id]
    pg = report.postgres
    assert (pg.customers_anonymised, pg.jobs_anonymised) == (1, 1)
    assert (pg.invoices_kept, pg.payments_kept) == (1, 0)
    assert pg.links_cleared == 3  # the customer at Stripe and the ERP, the job at the ERP

    systems = {s.provider: s for s in report.systems}
    stripe_steps = [(s.action, s.status) for s in systems["stripe"].steps]
    assert stripe_steps == [("anonymise", "done"), ("delete", "done")]
    # The ERP has no API: what it holds is kept, and the report says why.
    erp_steps = {(s.entity_type, s.status) for s in systems["internal"].steps}
    assert erp_steps == {("customer", "kept"), ("job", "kept"), ("invoice", "kept")}
    assert all("no API" in s.detail for s in systems["internal"].steps)

    # At Stripe: gone.
    assert person.crm.sim.live("customer") == []
    # In Postgres: the customer an empty, deleted shell; the job without its free text;
    # the invoice whole, still naming the customer; no link remembers the values.
    row = await person.pool.fetchrow("SELECT data, field_meta, deleted_at FROM customers")
    assert row["data"] == {}
    assert row["field_meta"] == {}
    assert row["deleted_at"] is not None
    job = await person.pool.fetchval("SELECT data FROM jobs")
    assert job == {"title": "Rewire", "customer_id": str(person.customer_id)}
    invoice = await person.pool.fetchval("SELECT data FROM invoices")
    assert invoice["customer_id"] == str(person.customer_id)
    assert invoice["total"] == 1000
    snapshots = await person.pool.fetchval(
        "SELECT count(*) FROM entity_links"
        " WHERE entity_type IN ('customer', 'job') AND last_seen_snapshot IS NOT NULL"
    )
    assert snapshots == 0
    assert await person.pool.fetchval(LINKS_WITH_PUSHES) == 0
    # The tombstone holds the hash, not the address.
    tombstone = await person.pool.fetchrow("SELECT * FROM privacy_tombstones")
    assert tombstone["entity_id"] == person.customer_id
    assert tombstone["identity_hash"] == report.subject.identity
    assert "lovelace" not in str(dict(tombstone)).lower()
    # Both steps are in the audit trail; the address is in neither.
    audit = await _audit_changes(person.pool)
    assert sorted(a.split(" ", 1)[0] for a in audit) == ["privacy.erase", "privacy.erase_systems"]
    assert "lovelace" not in " ".join(audit).lower()
    assert report.subject.identity in " ".join(audit)

    # An export afterwards finds the erased shell through the tombstone, nothing personal.
    async with person.pool.acquire() as conn:
        bundle = await privacy.export(conn, person.ctx, PrivacyRequest(email=EMAIL), now=now)
    assert bundle.subject.erased
    assert [c.data for c in bundle.customers] == [{}]
    (held,) = {s.provider: s for s in bundle.systems}["stripe"].records
    assert held.status in {"not_found", "found"}
    assert held.data is None or held.deleted


@pytest.mark.parametrize("set_based", [True, False], ids=["set_based", "one_by_one"])
async def test_after_an_erase_the_processor_refuses_the_person_but_keeps_the_accounts(
    pool: asyncpg.Pool, crm: SimulatedCrm, set_based: bool
) -> None:
    processor = Processor(pool, set_based=set_based)
    person = await _tenant_with_a_person(pool, crm, processor)
    async with pool.acquire() as conn:
        await privacy.erase(conn, person.ctx, PrivacyRequest(email=EMAIL), now=datetime.now(UTC))

    results = await processor.handle(
        TOPIC,
        [
            # Stripe reporting back our own delete, and a later edit there.
            change(person.stripe, "customer", person.stripe_id, {}, ts=at(10), op="delete"),
            change(person.stripe, "customer", person.stripe_id, {"email": EMAIL}, ts=at(11)),
            # A new record carrying the address (a backfill, another system), any case.
            change(person.stripe, "customer", "cus_new", {"email": EMAIL.upper()}, ts=at(12)),
            change(person.erp, "customer", "c-1", {"name": "Ada again"}, ts=at(13)),
            # Somebody else, and the accounts naming the erased customer, still apply.
            change(person.erp, "customer", "c-2", {"email": "grace@example.com"}, ts=at(14)),
            change(
                person.erp,
                "payment",
                "p-1",
                {"amount": 1000, "currency": "GBP", "status": "succeeded"},
                refs={"invoice_id": "i-1", "customer_id": "c-1"},
                ts=at(15),
            ),
        ],
    )
    outcomes = [r.outcome if r else None for r in results]
    assert outcomes == [Outcome.ERASED] * 4 + [Outcome.APPLIED] * 2

    live = await pool.fetch("SELECT data FROM customers WHERE deleted_at IS NULL")
    assert [r["data"]["email"] for r in live] == ["grace@example.com"]
    assert await pool.fetchval("SELECT data FROM customers WHERE id = $1", person.customer_id) == {}
    logged = await pool.fetchval("SELECT count(*) FROM sync_log WHERE outcome = 'erased'")
    assert logged == 4
    skips = await pool.fetch("SELECT reason FROM inbound_skips")
    assert [r["reason"] for r in skips] == ["erased"] * 4
    # The payment settled the erased customer's invoice, as accounting requires.
    assert await pool.fetchval("SELECT data->>'status' FROM invoices") == "paid"
    # Nothing of the person was emitted for the other systems.
    emails = await pool.fetch("SELECT payload::text AS p FROM outbox")
    leaks = [r["p"] for r in emails if "lovelace" in r["p"].lower()]
    assert not leaks, leaks


async def test_another_tenants_change_carrying_the_erased_address_still_applies(
    pool: asyncpg.Pool, crm: SimulatedCrm
) -> None:
    # A tombstone is the erasing tenant's alone; the processor skips the tombstone lookups
    # for a batch's tenants with none (services.processor.tombstones), and one batch may
    # hold both kinds.
    processor = Processor(pool)
    person = await _tenant_with_a_person(pool, crm, processor)
    async with pool.acquire() as conn:
        await privacy.erase(conn, person.ctx, PrivacyRequest(email=EMAIL), now=datetime.now(UTC))
    other = await lone_connection(
        pool,
        KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"]),
        provider="internal",
        name="erp",
        webhook_secret=None,
    )

    results = await processor.handle(
        TOPIC,
        [
            change(person.erp, "customer", "c-9", {"email": EMAIL}, ts=at(20)),
            change(other, "customer", "c-1", {"email": EMAIL}, ts=at(21)),
        ],
    )
    assert [r.outcome if r else None for r in results] == [Outcome.ERASED, Outcome.APPLIED]
    kept = await pool.fetchval(
        "SELECT data->>'email' FROM customers WHERE tenant_id = $1", other.tenant_id
    )
    assert kept == EMAIL.lower()  # stored normalised


async def test_a_system_that_fails_is_reported_and_the_erase_run_again_finishes_it(
    person: Person,
) -> None:
    # Stripe answers 500 to the next calls: the customer is neither anonymised nor deleted.
    person.crm.sim.faults.append(Fault(500, 2))
    async with person.pool.acquire() as conn:
        first = await privacy.erase(
            conn, person.ctx, PrivacyRequest(email=EMAIL), now=datetime.now(UTC)
        )
    assert not first.complete
    stripe = next(s for s in first.systems if s.provider == "stripe")
    assert {s.status for s in stripe.steps} == {"failed"}
    assert all("provider_5xx" in s.detail for s in stripe.steps)
    assert len(person.crm.sim.live("customer")) == 1
    # Postgres is erased already, and the tombstone refuses the person meanwhile.
    assert await person.pool.fetchval("SELECT count(*) FROM privacy_tombstones") == 1

    # Run again: found through the tombstone (Postgres no longer knows the address).
    await person.pool.execute("UPDATE connections SET updated_at = now()")  # a fresh breaker
    async with person.pool.acquire() as conn:
        again = await privacy.erase(
            conn, person.ctx, PrivacyRequest(email=EMAIL), now=datetime.now(UTC)
        )
    assert again.complete
    assert again.customers == [person.customer_id]
    assert person.crm.sim.live("customer") == []
    assert await person.pool.fetchval("SELECT count(*) FROM privacy_tombstones") == 1


async def test_no_such_person_is_not_found_and_changes_nothing(person: Person) -> None:
    async with person.pool.acquire() as conn:
        for operation in (privacy.export, privacy.erase):
            with pytest.raises(NotFoundError):
                await operation(
                    conn,
                    person.ctx,
                    PrivacyRequest(email="nobody@example.com"),
                    now=datetime.now(UTC),
                )
    assert await person.pool.fetchval("SELECT count(*) FROM admin_audit_log") == 0
    assert await person.pool.fetchval("SELECT count(*) FROM privacy_tombstones") == 0
    assert person.crm.writes() == []


# -- the admin API ------------------------------------------------------------------------


async def _customer(admin: Admin, email: str) -> None:
    await admin.pool.execute(
        "INSERT INTO customers (tenant_id, data) VALUES ($1, $2)", admin.tenant, {"email": email}
    )


async def test_the_api_exports_and_erases_with_an_admin_key_only(admin: Admin) -> None:
    await _customer(admin, "ada@example.com")
    body: dict[str, Any] = {"email": "ADA@example.com"}
    for path in ("/v1/privacy/export", "/v1/privacy/erase"):
        status, problem = await admin.call("POST", path, key=admin.read_key, json=body)
        assert status == 403, problem
    assert await admin.pool.fetchval("SELECT count(*) FROM privacy_tombstones") == 0

    bundle = await admin.ok("POST", "/v1/privacy/export", json=body)
    assert [c["data"]["email"] for c in bundle["customers"]] == ["ada@example.com"]
    assert bundle["systems"] == []
    report = await admin.ok("POST", "/v1/privacy/erase", json=body)
    assert report["complete"] is True
    assert report["postgres"]["customers_anonymised"] == 1
    assert await admin.pool.fetchval("SELECT data FROM customers") == {}
    # Another tenant does not see the person, erased or not.
    status, _ = await admin.call("POST", "/v1/privacy/export", key=admin.other_key, json=body)
    assert status == 404
    audit = await _audit_changes(admin.pool)
    assert len(audit) == 3
    assert "ada@example" not in " ".join(audit).lower()


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        ({"email": "not-an-address"}, 422, "/body/email"),
        ({"email": "ada@example.com", "extra": 1}, 422, "/body/extra"),
        ({}, 422, "/body/email"),
        ({"email": "nobody@example.com"}, 404, None),
    ],
)
async def test_bad_input_is_refused_precisely_and_changes_nothing(
    admin: Admin, body: dict[str, Any], status: int, loc: str | None
) -> None:
    await _customer(admin, "ada@example.com")
    for path in ("/v1/privacy/export", "/v1/privacy/erase"):
        got, problem = await admin.call("POST", path, json=body)
        assert got == status, problem
        assert problem["status"] == status
        if loc is not None:
            assert loc in {e["loc"] for e in problem["errors"]}
    assert await admin.pool.fetchval("SELECT data->>'email' FROM customers") == "ada@example.com"
    assert await admin.pool.fetchval("SELECT count(*) FROM admin_audit_log") == 0
    assert await admin.pool.fetchval("SELECT count(*) FROM privacy_tombstones") == 0


@pytest.mark.parametrize("provider", ["xero", "quickbooks", "hubspot", "ascora"])
async def test_each_provider_anonymises_then_deletes_its_customer_as_it_can(
    pool: asyncpg.Pool, provider: str
) -> None:
    crm = await start_simulator(provider)
    try:
        keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
        tenant = f"t-{uuid.uuid4().hex[:8]}"
        connection_id = await sims.connect(
            pool, keyring, crm, tenant=tenant, name=provider, ingest_url="http://127.0.0.1:9"
        )
        crm.sim.webhook_url = None
        held = crm.sim.create("customer", crm.sim.seed_object("customer", 0), notify=False)
        (external_id,) = crm.sim.store["customer"]
        mapper = connector_of(crm)
        email = mapper.to_canonical("customer", held, {}).data["email"]
        tenant_id = await pool.fetchval("SELECT id FROM tenants WHERE slug = $1", tenant)
        customer_id = await pool.fetchval(
            "INSERT INTO customers (tenant_id, data) VALUES ($1, $2) RETURNING id",
            tenant_id,
            {"email": email},
        )
        await pool.execute(
            "INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,"
            " external_id) VALUES ($1, $2, 'customer', $3, $4)",
            tenant_id,
            connection_id,
            customer_id,
            external_id,
        )
        ctx = Context(
            tenant_id=tenant_id,
            keyring=keyring,
            public_base_url="https://hooks.example.test",
            kafka=KafkaTarget("127.0.0.1:9092"),
            actor="test",
            allow_private_provider_urls=True,
        )
        async with pool.acquire() as conn:
            report = await privacy.erase(
                conn, ctx, PrivacyRequest(email=email), now=datetime.now(UTC)
            )
        (system,) = report.systems
        assert [(s.action, s.status) for s in system.steps] == [
            ("anonymise", "done"),
            ("delete", "done"),
        ], system.steps
        after = crm.sim.store["customer"][external_id]
        left = mapper.to_canonical("customer", after, {})
        assert left.data.get("email") in (None, ""), left
        assert email not in str(after).lower()
        assert left.deleted or external_id in crm.sim.deleted["customer"]
    finally:
        await crm.runner.cleanup()
