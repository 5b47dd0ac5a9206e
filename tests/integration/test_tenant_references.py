"""Invariant 11, a tenant reaches only its own rows: an id that comes from input (a
change's ``customer_id``, ``job_id`` or ``invoice_id``, the record a link names) is checked
against the tenant before it is used, and every query by id carries the tenant.

Issue 15, item 6: tenant A published a job and an invoice whose ``customer_id`` was tenant
B's customer; both were applied, and A's Ascora received B's customer's name and email,
with a link in A to B's customer. Here that attack, each of its steps on its own, and the
rows the bug left behind (links in A to B's records) are all held to the invariant.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from crmsync.common.canonical import TABLES
from crmsync.common.connections import CreatedConnection, create_connection
from schemas import topics
from schemas.records import CanonicalRecord
from services.outbound.queue import enqueue
from services.processor.deadletters import Source
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from tests.ingest_harness import Ingest, Tap
from tests.integration.test_admin_api import Admin, admin
from tests.integration.test_apply import KEYRING, TOPIC, at, change, connect, processor
from tests.integration.test_outbound import Env, env

__all__ = [
    "admin",
    "env",
    "processor",
]  # fixtures, imported for pytest (changes_tap: the conftest's)

# B's customer: what must never reach A.
BEA = {"name": "Bea Other", "email": "bea@bravo.example"}
# Each reference field, the entity type that carries it, and the type it names.
REFERENCES = [
    ("job", "customer_id", "customer"),
    ("invoice", "job_id", "job"),
    ("payment", "invoice_id", "invoice"),
]
SEED = {"customer": BEA, "job": {"title": "Bravo's job"}, "invoice": {"number": "B-1"}}


async def record(
    pool: asyncpg.Pool, entity_type: str, tenant_id: uuid.UUID, **data: Any
) -> uuid.UUID:
    record_id: uuid.UUID = await pool.fetchval(
        f"INSERT INTO {TABLES[entity_type]} (tenant_id, data) VALUES ($1, $2) RETURNING id",  # noqa: S608
        tenant_id,
        data or SEED[entity_type],
    )
    return record_id


async def letters(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT stage, reason, detail, tenant_id, connection_id FROM dead_letters"
        " ORDER BY kafka_offset, created_at"
    )


async def untouched(pool: asyncpg.Pool, entity_type: str, record_id: uuid.UUID) -> bool:
    row = await pool.fetchrow(
        f"SELECT data, version, deleted_at FROM {TABLES[entity_type]} WHERE id = $1",  # noqa: S608
        record_id,
    )
    assert row is not None
    return bool(row["data"] == SEED[entity_type] and row["version"] == 1 and not row["deleted_at"])


async def rows_of(pool: asyncpg.Pool, table: str, tenant_id: uuid.UUID) -> int:
    return int(
        await pool.fetchval(f"SELECT count(*) FROM {table} WHERE tenant_id = $1", tenant_id)  # noqa: S608
    )


# -- the processor --------------------------------------------------------------------------


@pytest.mark.parametrize(("entity_type", "field", "names"), REFERENCES)
async def test_a_reference_to_another_tenants_record_is_a_dead_letter_never_applied(
    pool: asyncpg.Pool, processor: Processor, entity_type: str, field: str, names: str
) -> None:
    a = await connect(pool, "acme", "erp")
    b = await connect(pool, "bravo", "erp")
    theirs = await record(pool, names, b.tenant_id)
    (result,) = await processor.handle(
        TOPIC, [change(a, "x-1", {field: str(theirs)}, ts=at(0), entity_type=entity_type)]
    )
    assert result is None
    [letter] = await letters(pool)
    assert (letter["reason"], letter["tenant_id"], letter["connection_id"]) == (
        "foreign_reference",
        a.tenant_id,
        a.id,
    )
    assert f"{field} {theirs}" in letter["detail"]
    for table in ("customers", "jobs", "invoices", "payments", "entity_links", "outbox"):
        assert await rows_of(pool, table, a.tenant_id) == 0, table
    assert await untouched(pool, names, theirs)


async def test_a_reference_to_no_record_reads_as_one_to_another_tenants_and_the_rest_applies(
    pool: asyncpg.Pool, processor: Processor
) -> None:
    """Both say the same, so a dead letter never tells A whether an id exists elsewhere;
    the batch's other changes (one naming A's own customer) still apply."""
    a = await connect(pool, "acme", "erp")
    b = await connect(pool, "bravo", "erp")
    theirs = await record(pool, "customer", b.tenant_id)
    ours = await record(pool, "customer", a.tenant_id, name="Ann")
    nobody = uuid.uuid4()
    results = await processor.handle(
        TOPIC,
        [
            change(a, "j-1", {"customer_id": str(theirs)}, ts=at(0), entity_type="job"),
            change(a, "j-2", {"customer_id": str(nobody)}, ts=at(0), entity_type="job"),
            change(a, "j-3", {"customer_id": str(ours)}, ts=at(0), entity_type="job"),
            change(a, "c-1", {"name": "Cal"}, ts=at(0)),
        ],
    )
    assert [r.outcome if r else None for r in results] == [
        None,
        None,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ]
    foreign, missing = await letters(pool)
    assert foreign["reason"] == missing["reason"] == "foreign_reference"
    assert foreign["detail"].replace(str(theirs), "ID") == missing["detail"].replace(
        str(nobody), "ID"
    )
    job = await pool.fetchval("SELECT data FROM jobs WHERE tenant_id = $1", a.tenant_id)
    assert job == {"customer_id": str(ours)}


async def test_a_link_to_another_tenants_record_never_updates_or_deletes_it(
    pool: asyncpg.Pool, processor: Processor
) -> None:
    """A link in A to B's customer, as the pusher wrote them before the fix: A's system
    edits and deletes what it believes is its customer, and B's record stays as it was."""
    a = await connect(pool, "acme", "ascora")
    b = await connect(pool, "bravo", "erp")
    theirs = await record(pool, "customer", b.tenant_id)
    await pool.execute(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id, external_id)
        VALUES ($1, $2, 'customer', $3, 'asc-1')
        """,
        a.tenant_id,
        a.id,
        theirs,
    )
    results = await processor.handle(
        TOPIC,
        [
            change(a, "asc-1", {"name": "Mallory"}, ts=at(0)),
            change(a, "asc-1", {}, ts=at(1), op="delete"),
        ],
    )
    assert results == [None, None]
    assert [(r["reason"], r["tenant_id"]) for r in await letters(pool)] == [
        ("foreign_reference", a.tenant_id)
    ] * 2
    assert await untouched(pool, "customer", theirs)
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_a_change_naming_another_tenants_connection_is_a_dead_letter(
    pool: asyncpg.Pool, processor: Processor
) -> None:
    """changes.internal says who published: tenant and connection must agree."""
    a = await connect(pool, "acme", "erp")
    b = await connect(pool, "bravo", "erp")
    forged = dataclasses.replace(b, tenant_id=a.tenant_id)
    (result,) = await processor.handle(TOPIC, [change(forged, "c-1", {"name": "Eve"}, ts=at(0))])
    assert result is None
    [letter] = await letters(pool)
    assert (letter["reason"], letter["tenant_id"]) == ("foreign_reference", a.tenant_id)
    assert str(b.id) in letter["detail"]
    assert await pool.fetchval("SELECT count(*) FROM customers") == 0
    # Nothing in either tenant's sync log pairs tenant A with B's connection.
    assert await pool.fetchval("SELECT count(*) FROM sync_log WHERE connection_id = $1", b.id) == 0


# -- the pusher -----------------------------------------------------------------------------


async def other_tenant(env: Env) -> CreatedConnection:
    async with env.pool.acquire() as conn:
        return await create_connection(
            conn, KEYRING, tenant=f"bravo-{uuid.uuid4().hex[:6]}", provider="internal",
            name="erp", webhook_secret=None,
        )  # fmt: skip


async def push(env: Env, entity_type: str, entity_id: uuid.UUID, rounds: int = 3) -> None:
    """Queue a push to A's Ascora and run the queue, dependencies included."""
    now = datetime.now(UTC)
    await enqueue(env.pool, [(env.tenant_id, env.target, entity_type, entity_id, 1, None, now)])
    for _ in range(rounds):
        await env.run_due()
        await env.make_due()


async def test_a_push_of_another_tenants_record_sends_and_links_nothing(env: Env) -> None:
    b = await other_tenant(env)
    theirs = await record(env.pool, "customer", b.tenant_id)
    await push(env, "customer", theirs)
    assert env.crm.sim.live("customer") == []
    assert await env.pool.fetchval("SELECT count(*) FROM entity_links") == 0
    assert await env.job() is None


@pytest.mark.parametrize("linked", [False, True], ids=["unlinked", "linked_by_the_old_bug"])
async def test_a_record_naming_another_tenants_record_is_a_dead_letter_and_that_record_stays_home(
    env: Env, linked: bool
) -> None:
    """A job accepted before the fix, naming B's customer: the push is parked, B's customer
    is neither queued nor sent, also when the old bug already linked it in A's Ascora."""
    b = await other_tenant(env)
    theirs = await record(env.pool, "customer", b.tenant_id)
    if linked:
        await env.pool.execute(
            """
            INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,
                                      external_id, last_pushed_version)
            VALUES ($1, $2, 'customer', $3, 'asc-bea', 1)
            """,
            env.tenant_id,
            env.target,
            theirs,
        )
    job = await record(env.pool, "job", env.tenant_id, title="Fix", customer_id=str(theirs))
    await push(env, "job", job)
    assert env.crm.sim.live("customer") == []
    assert env.crm.sim.live("job") == []
    [letter] = await letters(env.pool)
    assert (letter["stage"], letter["reason"], letter["tenant_id"]) == (
        "outbound",
        "foreign_reference",
        env.tenant_id,
    )
    assert f"customer_id {theirs}" in letter["detail"]
    assert await env.pool.fetchval("SELECT count(*) FROM push_jobs") == 0


# -- the admin API --------------------------------------------------------------------------


async def test_a_record_shows_only_its_tenants_links(admin: Admin) -> None:
    """A link another tenant holds to this tenant's record (the old bug's kind) is not
    shown with it: it names that tenant's connection and its system's id."""
    ours = await record(admin.pool, "customer", admin.tenant)
    async with admin.pool.acquire() as conn:
        theirs = await create_connection(
            conn, KEYRING, tenant="globex", provider="internal", name="erp", webhook_secret=None
        )
    await admin.pool.execute(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id, external_id)
        VALUES ($1, $2, 'customer', $3, 'globex-1')
        """,
        theirs.tenant_id,
        theirs.id,
        ours,
    )
    got = await admin.ok("GET", f"/v1/customers/{ours}")
    assert got["links"] == []
    listed = await admin.ok("GET", "/v1/customers")
    assert [c["links"] for c in listed["items"]] == [[]]


# -- the attack, end to end -----------------------------------------------------------------


async def test_the_reported_attack_reaches_nothing_of_the_other_tenant(
    env: Env, ingest: Ingest, changes_tap: Tap
) -> None:
    """Tenant A's key publishes a job and an invoice naming B's customer: ingest accepts
    them (it looks nothing up), the processor parks both, and A's Ascora receives nothing."""
    b = await other_tenant(env)
    theirs = await record(env.pool, "customer", b.tenant_id)
    slug = await env.pool.fetchval("SELECT slug FROM tenants WHERE id = $1", env.tenant_id)
    async with env.pool.acquire() as conn:
        publisher = await create_connection(
            conn, KEYRING, tenant=slug, provider="internal", name="billing", webhook_secret=None
        )
    auth = {"Authorization": f"Bearer {publisher.api_key}"}
    sources = []
    for entity_type, data in (("job", {"title": "Leak"}), ("invoice", {"number": "A-1"})):
        published = {
            "event_id": f"evt-{entity_type}",
            "entity_type": entity_type,
            "op": "upsert",
            "external_id": f"{entity_type}-1",
            "occurred_at": "2026-11-21T10:00:00Z",
            "data": {**data, "customer_id": str(theirs)},
        }
        resp = await ingest.client.post("/v1/changes", json=published, headers=auth)
        assert resp.status == 202, await resp.text()
        key = f"{env.tenant_id}:{entity_type}:{entity_type}-1".encode()
        (message,) = await changes_tap.read(key, 1)
        sources.append(Source(TOPIC, message.partition, message.offset, key, message.value))

    results = await Processor(env.pool).handle(topics.CHANGES_INTERNAL.name, sources)
    for row in await env.pool.fetch("SELECT payload FROM outbox"):  # none, if all is well
        await env.enqueue(CanonicalRecord.model_validate_json(json.dumps(row["payload"])))
    for _ in range(3):  # pushes, and the pushes of what they name
        await env.run_due()
        await env.make_due()
    assert env.crm.sim.live("customer") == []
    assert await env.pool.fetchval("SELECT count(*) FROM entity_links") == 0
    assert await untouched(env.pool, "customer", theirs)
    assert results == [None, None]
    assert [r["reason"] for r in await letters(env.pool)] == ["foreign_reference"] * 2
