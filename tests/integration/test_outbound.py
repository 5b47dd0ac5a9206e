"""Outbound pushes against a real provider simulator (Ascora's API shape on a real aiohttp
server) and the test's own Postgres: create/update/delete, retries, rate limits, the
breaker, dead letters, stale retries and a crash between the provider's answer and ours."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from connectors.http import OAuthTokens
from connectors.limits import BreakerPolicy
from connectors.runtime import Clients, Handle, credentials_json
from connectors.simkit import Fault
from connectors.spec import ApiClient, EntityType
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.common.crypto import KeyRing
from crmsync.common.kafka import make_consumer, make_producer
from crmsync.common.pushes import Job, Push, claim, queue_pushes
from schemas.records import CanonicalRecord
from services.outbound import metrics as outbound_metrics
from services.outbound import service
from services.outbound.pusher import Pusher, PushPolicy
from services.outbound.queue import Router, enqueue, push_rows
from services.outbound.service import Outbound
from services.processor.apply import Applied, apply_change
from services.processor.deadletters import Source
from services.processor.decide import InboundChange, Outcome
from services.processor.merge import Policy
from services.processor.pipeline import Parsed, Processor, resolve_refs
from tests.conftest import TopicFactory, started
from tests.e2e.sync_harness import SimulatedCrm, start_simulator
from tests.integration.erp_to_ascora import erp_and_ascora, erp_and_target

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
T = TypeVar("T")


@dataclass
class Env:
    pool: asyncpg.Pool
    crm: SimulatedCrm
    tenant_id: uuid.UUID
    origin: uuid.UUID  # an internal publisher: where changes come from
    target: uuid.UUID  # the simulated Ascora: where they go
    pusher: Pusher
    clients: Clients

    async def change(self, n: int, data: dict[str, Any], op: str = "upsert") -> CanonicalRecord:
        """Apply a change from the origin connection; return what records.changed carries."""
        processor = Processor(self.pool)
        change = InboundChange(
            tenant_id=self.tenant_id,
            connection_id=self.origin,
            dedup_key=f"evt-{n}",
            entity_type="customer",
            op=op,  # type: ignore[arg-type]
            external_id="cust-1",
            source_ts=T0 + timedelta(seconds=n),
            data=data,
            received_at=datetime.now(UTC),
        )
        result = await processor._apply_batch([_parsed(change)])
        assert result[0] is not None
        assert result[0].change_id is not None
        payload = await self.pool.fetchval(
            "SELECT payload FROM outbox WHERE change_id = $1", result[0].change_id
        )
        return CanonicalRecord.model_validate_json(json.dumps(payload))

    async def enqueue(self, record: CanonicalRecord) -> None:
        targets = await Router(self.pool).targets(record)
        await enqueue(self.pool, push_rows(record, targets))

    async def run_due(self, pusher: Pusher | None = None) -> list[Job]:
        jobs = (await claim(self.pool, 100, lease_seconds=0.5)).jobs
        for job in jobs:
            await (pusher or self.pusher).run(job)
        return jobs

    async def job(self) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM push_jobs")

    async def make_due(self) -> None:
        await self.pool.execute("UPDATE push_jobs SET next_attempt_at = now()")

    async def fault(self, status: int, count: int, retry_after: float | None = None) -> None:
        self.crm.sim.faults.append(Fault(status, count, retry_after))


def _parsed(change: InboundChange) -> Parsed:
    return Parsed(Source("test", 0, 0, None, b"{}"), change)


@pytest.fixture
async def env(pool: asyncpg.Pool) -> AsyncIterator[Env]:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    crm = await start_simulator("ascora", company_code="ACME")
    origin, target = await erp_and_ascora(pool, keyring, crm, "ACME")
    session = aiohttp.ClientSession()
    clients = stored_clients(
        pool, keyring, session, breaker_policy=BreakerPolicy(min_calls=3, open_seconds=0.5)
    )
    pusher = Pusher(pool, clients, PushPolicy(max_attempts=5, backoff_base_seconds=0.01))
    try:
        yield Env(pool, crm, origin.tenant_id, origin.id, target.id, pusher, clients)
    finally:
        await session.close()
        await crm.runner.cleanup()


CUSTOMER = {"name": "Harbour Plumbing", "email": "office@harbour.example", "phone": "+61 2 5550 1"}


async def test_create_then_update_then_delete_reach_the_provider(env: Env) -> None:
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.run_due()
    [created] = env.crm.sim.live("customer")
    assert created["emailAddress"] == "office@harbour.example"
    link = await env.pool.fetchrow(
        "SELECT * FROM entity_links WHERE connection_id = $1", env.target
    )
    assert link["external_id"] == created["customerId"]
    assert link["last_pushed_version"] == 1
    assert link["last_pushed_hash"] is not None
    assert await env.job() is None

    await env.enqueue(await env.change(2, {**CUSTOMER, "phone": "+61 2 5550 2"}))
    await env.run_due()
    [updated] = env.crm.sim.live("customer")
    assert updated["phoneNumber"] == "+61 2 5550 2"

    await env.enqueue(await env.change(3, {}, op="delete"))
    await env.run_due()
    assert env.crm.sim.live("customer") == []
    methods = [r["method"] for r in env.crm.writes()]
    assert methods == ["POST", "PATCH", "DELETE"]


async def test_a_change_is_never_routed_back_to_its_origin(env: Env) -> None:
    record = await env.change(1, CUSTOMER)
    targets = await Router(env.pool).targets(record)
    assert [t.id for t in targets] == [env.target]
    echo = record.model_copy(update={"origin_connection_id": env.target})
    assert await Router(env.pool).targets(echo) == []


async def test_429_waits_for_retry_after_without_using_an_attempt(env: Env) -> None:
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.fault(429, 1, retry_after=7)
    await env.run_due()
    job = await env.job()
    assert job is not None
    assert job["attempts"] == 0
    wait = (job["next_attempt_at"] - datetime.now(UTC)).total_seconds()
    assert 5 < wait <= 7.5
    assert env.crm.sim.live("customer") == []
    # Not due yet: nothing runs, and the claim says when it will be; once due (and the
    # bucket's penalty over), it goes through.
    claimed = await claim(env.pool, 100, lease_seconds=0.5)
    assert claimed.jobs == []
    assert claimed.next_due_seconds is not None
    assert 5 < claimed.next_due_seconds <= 7.5
    await env.make_due()
    # The 429's pause is over by the clock we skipped: a fresh bucket stands for that.
    await env.pool.execute("DELETE FROM provider_budgets WHERE connection_id = $1", env.target)
    await env.run_due()
    assert len(env.crm.sim.live("customer")) == 1


async def test_three_500s_then_success_leaves_one_record(env: Env) -> None:
    env.clients.breaker_policy = BreakerPolicy(min_calls=10)
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.fault(500, 3)
    for _ in range(4):
        await env.make_due()
        await env.run_due()
    assert len(env.crm.sim.live("customer")) == 1
    assert await env.job() is None
    statuses = [r.get("status") for r in env.crm.sim.log.requests if r["method"] == "POST"]
    assert statuses == [500, 500, 500, 201]


async def test_400_is_a_dead_letter_with_the_provider_error_and_no_retry(env: Env) -> None:
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.fault(400, 1)
    await env.run_due()
    assert await env.job() is None
    dead = await env.pool.fetchrow("SELECT * FROM dead_letters WHERE stage = 'outbound'")
    assert dead["reason"] == "provider_4xx"
    payload = json.loads(dead["payload"])
    assert payload["status"] == 400
    assert payload["request"] == "POST /api/v1/customers"
    assert payload["response_excerpt"]
    assert "sim-token" not in dead["detail"] + dead["payload"].decode()
    assert len(env.crm.sim.log.requests) == 1


async def test_breaker_opens_then_half_opens_and_recovers(env: Env) -> None:
    for n in range(3):
        record = await env.change(n + 1, {**CUSTOMER, "phone": f"+61 {n}"})
        await env.enqueue(record)
    await env.fault(503, 3)
    for _ in range(3):
        await env.make_due()
        await env.run_due()
    handle = env.clients.cached()[0]
    assert handle.circuit_state.value == "open"
    before = len(env.crm.sim.log.requests)
    await env.make_due()
    await env.run_due()
    assert len(env.crm.sim.log.requests) == before, "an open breaker let a call through"
    job = await env.job()
    assert job is not None
    assert "circuit_open" in job["last_error"]
    await asyncio.sleep(0.6)  # open_seconds
    await env.make_due()
    await env.run_due()
    assert handle.circuit_state.value == "closed"
    assert len(env.crm.sim.live("customer")) == 1


async def test_a_retry_of_an_older_version_is_skipped_after_a_newer_push(env: Env) -> None:
    first = await env.change(1, CUSTOMER)
    second = await env.change(2, {**CUSTOMER, "phone": "+61 2 5550 2"})
    await env.enqueue(second)
    await env.run_due()
    writes = len(env.crm.writes())
    await env.enqueue(first)  # a redelivered, older event
    await env.run_due()
    assert len(env.crm.writes()) == writes
    assert await env.job() is None
    [customer] = env.crm.sim.live("customer")
    assert customer["phoneNumber"] == "+61 2 5550 2"


async def test_a_job_is_pushed_with_its_customers_id_on_the_target(env: Env) -> None:
    customer = await env.change(1, CUSTOMER)
    job_id = await env.pool.fetchval(
        "INSERT INTO jobs (tenant_id, data) VALUES ($1, $2) RETURNING id",
        env.tenant_id,
        {"title": "Fix the leak", "customer_id": str(customer.entity_id)},
    )
    job = (env.tenant_id, env.target, "job", job_id, 1, None, datetime.now(UTC))
    # The job first: its customer is not on the target yet, so the customer goes first.
    await enqueue(env.pool, [job])
    assert [j.entity_type for j in await env.run_due()] == ["job"]
    assert env.crm.sim.live("job") == []
    queued = await env.pool.fetch("SELECT entity_type, attempts FROM push_jobs ORDER BY id")
    assert [(r["entity_type"], r["attempts"]) for r in queued] == [("job", 1), ("customer", 0)]
    await env.run_due()  # the customer
    await env.make_due()  # instead of waiting for the dependency pause
    await env.run_due()  # the job, its customer's link read with it
    [created] = env.crm.sim.live("job")
    [linked] = env.crm.sim.live("customer")
    assert created["customerId"] == linked["customerId"]
    assert await env.job() is None


class CrashAfterProviderAnswered(Pusher):
    """Dies between the provider's 201 and our link write: the worst moment."""

    async def _remember(self, **kwargs: Any) -> None:
        raise RuntimeError("killed")


async def test_a_crash_after_the_create_neither_loses_nor_duplicates_it(env: Env) -> None:
    await env.enqueue(await env.change(1, CUSTOMER))
    crashing = CrashAfterProviderAnswered(env.pool, env.clients, env.pusher.policy)
    with pytest.raises(RuntimeError):
        await env.run_due(crashing)
    assert len(env.crm.sim.live("customer")) == 1
    assert await env.job() is not None, "the job must survive the crash"
    assert await env.run_due() == []  # leased
    await asyncio.sleep(0.6)  # the lease runs out
    await env.run_due()
    assert len(env.crm.sim.live("customer")) == 1, "the retried create made a duplicate"
    assert await env.job() is None
    link = await env.pool.fetchval(
        "SELECT external_id FROM entity_links WHERE connection_id = $1", env.target
    )
    assert link == env.crm.sim.live("customer")[0]["customerId"]


@pytest.mark.parametrize(
    ("table", "event"),
    [("entity_links", "INSERT"), ("sync_log", "INSERT"), ("push_jobs", "DELETE")],
)
async def test_the_bookkeeping_after_a_push_is_all_or_nothing(
    env: Env, table: str, event: str
) -> None:
    await env.enqueue(await env.change(1, CUSTOMER))
    # In the test's own database: one of the three writes after the provider's answer fails.
    await env.pool.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql"
        " AS $$BEGIN RAISE EXCEPTION 'refused by the test'; END$$"
    )
    await env.pool.execute(
        f"CREATE TRIGGER refuse BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    with pytest.raises(asyncpg.RaiseError):
        await env.run_due()
    assert len(env.crm.sim.live("customer")) == 1  # the provider has it; we wrote nothing
    links = "SELECT count(*) FROM entity_links WHERE connection_id = $1"
    pushed = "SELECT count(*) FROM sync_log WHERE direction = 'out'"
    assert await env.pool.fetchval(links, env.target) == 0, "a link without its job's finish"
    assert await env.pool.fetchval(pushed) == 0, "a sync_log row without its push's link"
    job = await env.job()
    assert job is not None, "the job finished without its link"
    assert job["version"] == 1

    await env.pool.execute(f"DROP TRIGGER refuse ON {table}")
    await env.make_due()  # instead of waiting for the lease
    await env.run_due()
    assert len(env.crm.sim.live("customer")) == 1, "the retried create made a duplicate"
    assert await env.pool.fetchval(links, env.target) == 1
    assert await env.pool.fetchval(pushed) == 1
    assert await env.job() is None


class NewerVersionDuringThePush(Pusher):
    """A newer version of the record is committed and queued while the provider call is in
    flight: after the push's reads, before its bookkeeping."""

    def __init__(self, env: Env, n: int, data: dict[str, Any]) -> None:
        super().__init__(env.pool, env.clients, env.pusher.policy)
        self.env = env
        self.newer = (n, data)

    async def _call(
        self, handle: Handle, operation: str, call: Callable[[ApiClient], Awaitable[T]]
    ) -> T:
        try:
            return await super()._call(handle, operation, call)
        finally:  # answered or refused: either way before the push's bookkeeping
            await self.env.enqueue(await self.env.change(*self.newer))


async def test_a_version_queued_during_a_push_is_pushed_next_not_lost(env: Env) -> None:
    await env.enqueue(await env.change(1, CUSTOMER))
    [job] = (await claim(env.pool, 100, lease_seconds=60)).jobs
    racing = NewerVersionDuringThePush(env, 2, {**CUSTOMER, "phone": "+61 2 5550 2"})
    assert await racing.run(job) is True, "the worker must hear that the row is due again"
    row = await env.job()
    assert row is not None, "the newer version's push was lost with the finished job"
    assert (row["version"], row["attempts"]) == (2, 0)
    due_now = await env.pool.fetchval("SELECT next_attempt_at <= now() FROM push_jobs")
    assert due_now, "the re-armed row waits for the old lease"
    link = "SELECT last_pushed_version FROM entity_links WHERE connection_id = $1"
    assert await env.pool.fetchval(link, env.target) == 1

    await env.run_due()
    [customer] = env.crm.sim.live("customer")
    assert customer["phoneNumber"] == "+61 2 5550 2"
    assert [r["method"] for r in env.crm.writes()] == ["POST", "PATCH"]
    assert await env.pool.fetchval(link, env.target) == 2
    assert await env.job() is None


async def _until_a_statement_waits_for_a_lock(pool: asyncpg.Pool) -> None:
    for _ in range(200):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the push's bookkeeping never waited for the row the test holds")


async def _pushed_once_then_queued_again(env: Env) -> tuple[CanonicalRecord, Job]:
    """A customer pushed (so linked), then a newer version queued and claimed."""
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.run_due()
    record = await env.change(2, {**CUSTOMER, "phone": "+61 2 5550 2"})
    await env.enqueue(record)
    [job] = (await claim(env.pool, 100, lease_seconds=60)).jobs
    return record, job


def _bookkeeping_deadlocks() -> float:
    """Bookkeepings done again as a deadlock's victim, so far (any provider)."""
    found = 0.0
    for metric in outbound_metrics.RETRIES.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["reason"] == "bookkeeping_deadlock":
                found += sample.value
    return found


_LOCK_LINK = "SELECT 1 FROM entity_links WHERE connection_id = $1 AND entity_id = $2 FOR UPDATE"


async def test_the_bookkeeping_takes_the_link_before_the_job_row_as_the_processor_does(
    env: Env,
) -> None:
    """The processor's batch locks the links of the records it applies (its load, FOR
    UPDATE) and then may queue a push of one of them to that link's connection (an echo
    that shows the system fell behind). A push's bookkeeping takes the same two rows; it
    took the job row first, and the two deadlocked (the convergence test, 1 run in 9: the
    bookkeeping was lost, the job ran again after its lease and wrote the provider twice).
    Since a deadlocked bookkeeping is done again (the test below), the order shows in that
    it never deadlocks: no retry was needed."""
    record, job = await _pushed_once_then_queued_again(env)
    deadlocks = _bookkeeping_deadlocks()
    async with env.pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK_LINK, env.target, record.entity_id)
        push = asyncio.create_task(env.pusher.run(job))
        await _until_a_statement_waits_for_a_lock(env.pool)
        # The processor's push_again of the same record to the same connection.
        again = Push(env.tenant_id, env.target, "customer", record.entity_id, record.version)
        await queue_pushes(conn, [again], due_now=True)
    await asyncio.wait_for(push, 10)
    assert _bookkeeping_deadlocks() == deadlocks, "the job's row was taken before the link's"
    link = "SELECT last_pushed_version FROM entity_links WHERE connection_id = $1"
    assert await env.pool.fetchval(link, env.target) == 2
    assert [r["method"] for r in env.crm.writes()] == ["POST", "PATCH"]


async def test_a_deadlocked_bookkeeping_is_done_again_not_lost(env: Env) -> None:
    """Should a transaction take the job row and then the link (the other order), PostgreSQL
    breaks the deadlock by failing one side: when that is the push's bookkeeping, it is
    done again at once, as PostgreSQL advises, instead of the provider being written again
    after the job's lease."""
    record, job = await _pushed_once_then_queued_again(env)
    async with env.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM push_jobs WHERE id = $1 FOR UPDATE", job.id)
        push = asyncio.create_task(env.pusher.run(job))
        await _until_a_statement_waits_for_a_lock(env.pool)
        # Waiting later than the push, this side's deadlock check runs after the push's
        # (deadlock_timeout after each one's wait began), so the push is the one failed.
        await asyncio.sleep(0.3)
        await conn.execute(_LOCK_LINK, env.target, record.entity_id)
    await asyncio.wait_for(push, 10)
    link = "SELECT last_pushed_version FROM entity_links WHERE connection_id = $1"
    assert await env.pool.fetchval(link, env.target) == 2
    assert await env.job() is None
    assert [r["method"] for r in env.crm.writes()] == ["POST", "PATCH"]


async def test_a_unique_key_the_bookkeeping_breaks_counts_attempts_then_is_a_dead_letter(
    env: Env,
) -> None:
    """A unique key the push's bookkeeping breaks that no rule of the pusher foresees (here
    a test's index on sync_log stands for one): the UniqueViolationError escaped the push,
    which ran again every lease (60 s), for ever, without counting an attempt. Now each is
    an attempt, and after the budget one dead letter names the constraint."""
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.run_due()
    await env.pool.execute(
        "CREATE UNIQUE INDEX sync_log_one_push_per_record ON sync_log (entity_id)"
        " WHERE direction = 'out'"
    )
    await env.enqueue(await env.change(2, {**CUSTOMER, "phone": "+61 2 5550 2"}))
    attempts = env.pusher.policy.max_attempts
    for attempt in range(1, attempts):
        await env.run_due()
        job = await env.job()
        assert job is not None
        assert job["attempts"] == attempt
        assert "sync_log_one_push_per_record" in job["last_error"]
        await env.make_due()
    await env.run_due()
    assert await env.job() is None
    [dead] = await env.pool.fetch("SELECT reason, detail FROM dead_letters")
    assert dead["reason"] == "unique_violation"
    assert "sync_log_one_push_per_record" in dead["detail"]
    assert f"{attempts} attempts" in dead["detail"]


async def test_an_update_to_a_record_its_user_deleted_there_waits_for_that_delete(
    env: Env,
) -> None:
    """The user deletes the customer in Ascora while our update of it is on its way (a
    retry after a 429, say): Ascora answers the PATCH 404 before its delete webhook has
    reached us. That is no failure to park: the push waits, and once the delete is
    applied it finds the record deleted, which Ascora already is (the convergence test
    had 1-2 such not_found dead letters per 200 customer operations)."""
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.run_due()
    [created] = env.crm.sim.live("customer")
    env.crm.sim.delete("customer", created["customerId"])
    await env.enqueue(await env.change(2, {**CUSTOMER, "phone": "+61 2 5550 2"}))
    await env.run_due()
    assert await env.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    job = await env.job()
    assert job is not None, "the update was given up"
    assert job["attempts"] == 1

    # Ascora's delete webhook, applied: a change from Ascora is not routed back to it.
    await env.change(3, {}, op="delete")
    await env.make_due()
    await env.run_due()
    assert await env.job() is None
    assert await env.pool.fetchval("SELECT count(*) FROM dead_letters") == 0
    assert [r["method"] for r in env.crm.writes()] == ["POST", "PATCH", "DELETE"]


async def test_an_update_whose_record_stays_gone_there_is_a_not_found_dead_letter(
    env: Env,
) -> None:
    """No delete ever arrives: after its attempts the push is parked as not_found."""
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.run_due()
    [created] = env.crm.sim.live("customer")
    env.crm.sim.delete("customer", created["customerId"])
    await env.enqueue(await env.change(2, {**CUSTOMER, "phone": "+61 2 5550 2"}))
    for _ in range(env.pusher.policy.max_attempts):
        await env.make_due()
        await env.run_due()
    assert await env.job() is None
    assert await env.pool.fetchval("SELECT reason FROM dead_letters") == "not_found"


async def test_a_version_queued_during_a_push_that_is_given_up_is_due_at_once(
    env: Env,
) -> None:
    """Version 1 is refused (400, a dead letter); version 2, queued while the provider
    answered, is due at once with fresh attempts, not after version 1's lease."""
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.fault(400, 1)
    [job] = (await claim(env.pool, 100, lease_seconds=60)).jobs
    racing = NewerVersionDuringThePush(env, 2, {**CUSTOMER, "phone": "+61 2 5550 2"})
    assert await racing.run(job) is True

    dead = await env.pool.fetchrow("SELECT reason, payload FROM dead_letters")
    assert dead["reason"] == "provider_4xx"
    assert json.loads(dead["payload"])["version"] == 1
    row = await env.job()
    assert row is not None, "the newer version's push was lost with the given-up job"
    assert (row["version"], row["attempts"], row["last_error"]) == (2, 0, None)
    assert await env.pool.fetchval("SELECT next_attempt_at <= now() FROM push_jobs")

    await env.run_due()
    [customer] = env.crm.sim.live("customer")
    assert customer["phoneNumber"] == "+61 2 5550 2"
    assert await env.job() is None


async def test_a_refused_token_refresh_marks_needs_reauth_and_pushes_wait(
    pool: asyncpg.Pool,
) -> None:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    crm = await start_simulator("xero")
    crm.sim.fail_refresh = True
    expired = OAuthTokens(
        access_token="at-expired",
        refresh_token="rt-revoked",
        expires_at=0,
        client_id="client",
        client_secret="secret",
        token_url="/oauth/token",
    )
    origin, xero = await erp_and_target(
        pool,
        keyring,
        crm,
        credentials=credentials_json(oauth=expired),
        settings={"xero_tenant_id": crm.sim.tenant_id},  # type: ignore[attr-defined]
    )
    session = aiohttp.ClientSession()
    clients = stored_clients(pool, keyring, session)
    env = Env(
        pool,
        crm,
        origin.tenant_id,
        origin.id,
        xero.id,
        Pusher(pool, clients, PushPolicy()),
        clients,
    )
    try:
        await env.enqueue(await env.change(1, CUSTOMER))
        await asyncio.gather(*(env.run_due() for _ in range(3)))
        assert crm.sim.refresh_calls == 1
        status = await pool.fetchval("SELECT status FROM connections WHERE id = $1", xero.id)
        assert status == "needs_reauth"
        job = await env.job()
        assert job is not None, "the push must wait for re-authorisation, not be dropped"
        assert job["attempts"] == 0
        assert "needs_reauth" in job["last_error"]
        assert await pool.fetchval("SELECT count(*) FROM dead_letters") == 0
        # Still refused later, without hammering the provider's token endpoint.
        await env.make_due()
        await env.run_due()
        assert crm.sim.refresh_calls == 1
        assert env.crm.sim.live("customer") == []
    finally:
        await session.close()
        await crm.runner.cleanup()


async def test_a_batch_whose_enqueue_failed_is_consumed_again_not_skipped(
    env: Env, kafka_bootstrap: str, new_topic: TopicFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL away between getmany and the commit: getmany had moved the position
    past the batch, and the restarted loop used to go on from there (10 of 500 committed
    changes were never pushed). It resumes from the committed offsets instead."""
    topic = await new_topic("records-changed", partitions=1)
    records = [await env.change(n, {"name": f"Acme {n}"}) for n in range(1, 4)]
    async with started(make_producer(kafka_bootstrap)) as producer:
        for record in records:
            await producer.send_and_wait(topic, record.model_dump_json().encode())

    real_enqueue = service.enqueue
    failures = 0

    async def enqueue_once_away(pool: asyncpg.Pool, rows: list[Any]) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise asyncpg.CannotConnectNowError("the database system is shutting down")
        await real_enqueue(pool, rows)

    monkeypatch.setattr(service, "enqueue", enqueue_once_away)
    consumer: AIOKafkaConsumer = make_consumer(
        kafka_bootstrap, topic, group_id=f"outbound-{uuid.uuid4().hex[:8]}"
    )
    async with started(consumer):
        outbound = Outbound(
            env.pool, consumer, env.clients, env.pusher, concurrency=1, lease_seconds=5
        )
        task = asyncio.create_task(outbound.resilient("consume", outbound.consume))
        try:
            for _ in range(100):
                job = await env.job()
                if job is not None and job["version"] == records[-1].version:
                    break
                await asyncio.sleep(0.1)
            assert failures == 1
            job = await env.job()
            assert job is not None, "the batch that failed was skipped"
            assert job["version"] == records[-1].version
        finally:
            outbound.stopping.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _ascora_change(
    env: Env, entity_type: EntityType, external_id: str, dedup_key: str
) -> InboundChange:
    """Ascora's webhook of a record as it holds it now (hydrated, as a thin one is)."""
    info = await load_connection(env.pool, env.target, tenant_id=env.tenant_id)
    assert info is not None
    remote = await (await env.clients.get(info)).client.fetch(entity_type, external_id)
    return InboundChange(
        tenant_id=env.tenant_id,
        connection_id=env.target,
        dedup_key=dedup_key,
        entity_type=entity_type,
        op="upsert",
        external_id=remote.external_id,
        source_ts=remote.updated_at,
        data=dict(remote.data),
        received_at=datetime.now(UTC),
        refs=dict(remote.refs),
    )


async def _ascora_reports(env: Env, n: int) -> Applied:
    """Ascora's webhook of the customer as it holds it now, applied like any change from
    it."""
    [held] = env.crm.sim.live("customer")
    change = await _ascora_change(env, "customer", held["customerId"], f"ascora-{n}")
    [result] = await Processor(env.pool)._apply_batch([_parsed(change)])
    assert result is not None
    return result


async def _ascora_user_edits(env: Env, body: dict[str, Any]) -> None:
    [held] = env.crm.sim.live("customer")
    await asyncio.sleep(0.01)  # Ascora's lastModified has millisecond resolution
    env.crm.sim.update("customer", held["customerId"], body)


async def test_a_user_reverting_a_field_to_the_value_we_pushed_is_an_edit_not_an_echo(
    env: Env,
) -> None:
    """X → Y → X in Ascora: the revert holds exactly what our push once wrote there, but it
    is the user's write, made after ours. Recognised as an echo by its values alone, it was
    dropped, and every other system kept Y for good (a convergence-test mismatch)."""
    await env.enqueue(await env.change(1, CUSTOMER))
    await env.run_due()
    assert (await _ascora_reports(env, 1)).outcome == Outcome.ECHO  # our own write

    await _ascora_user_edits(env, {"emailAddress": "accounts@harbour.example"})
    edited = await _ascora_reports(env, 2)
    assert (edited.outcome, edited.version) == (Outcome.APPLIED, 2)

    await _ascora_user_edits(env, {"emailAddress": CUSTOMER["email"]})
    reverted = await _ascora_reports(env, 3)
    assert (reverted.outcome, reverted.version) == (Outcome.APPLIED, 3)
    data = await env.pool.fetchval("SELECT data FROM customers WHERE id = $1", edited.entity_id)
    assert data["email"] == CUSTOMER["email"]
    # And the revert goes out like any edit: an outbox row for version 3, from Ascora.
    origin = await env.pool.fetchval(
        "SELECT origin_connection_id FROM outbox WHERE entity_id = $1 AND version = 3",
        edited.entity_id,
    )
    assert origin == env.target


class EchoBeforeTheLink(Pusher):
    """Applies Ascora's webhook of the record of kind ``kind`` this push just created
    between Ascora's answer and the push's bookkeeping: a loaded outbound's event loop lets
    the echo through the processor first (the catalogue convergence case, seed 13, at load
    7: two live jobs)."""

    kind: str
    echo: Callable[[str], Awaitable[Applied]]
    echoed: list[Applied]

    async def _remember(self, **kwargs: Any) -> bool:
        if kwargs["job"].entity_type == self.kind:
            self.echoed.append(await self.echo(kwargs["external_id"]))
        return await super()._remember(**kwargs)


async def _made(env: Env, kind: EntityType, data: dict[str, Any]) -> Applied:
    """A record of ``kind`` made at the origin (applied, its push not queued yet)."""
    change = InboundChange(
        tenant_id=env.tenant_id,
        connection_id=env.origin,
        dedup_key=f"evt-{kind}",
        entity_type=kind,
        op="upsert",
        external_id=f"{kind}-1",
        source_ts=T0,
        data=data,
        received_at=datetime.now(UTC),
    )
    [made] = await Processor(env.pool)._apply_batch([_parsed(change)])
    assert made is not None
    assert made.entity_id is not None
    return made


async def _enqueue_made(env: Env, made: Applied) -> None:
    payload = await env.pool.fetchval(
        "SELECT payload FROM outbox WHERE change_id = $1", made.change_id
    )
    await env.enqueue(CanonicalRecord.model_validate_json(json.dumps(payload)))


# Records with no first-contact key (a job has none; a customer without an email, an
# invoice without a number, a payment without a reference), each made at the origin
# once the records it names are at Ascora: ``{}`` stands for those records' ids.
INVOICE_LINES = [
    {"description": "Callout", "quantity": "1", "unit_amount": 20000, "tax_amount": 2000}
]
NO_KEY: dict[str, dict[str, Any]] = {
    "job": {"title": "Gutter clean j3"},
    "customer": {"name": "Pat Nguyen", "phone": "+61 2 5550 7"},
    "invoice": {
        "currency": "AUD",
        "status": "open",
        "lines": INVOICE_LINES,
        "subtotal": 20000,
        "tax": 2000,
        "total": 22000,
    },
    "payment": {
        "amount": 5000,
        "currency": "AUD",
        "status": "succeeded",
        "paid_at": "2026-12-01T10:00:00Z",
    },
}


async def _named_records(env: Env, kind: str) -> dict[str, str]:
    """The records a ``kind`` of NO_KEY names, made at the origin and pushed to Ascora."""
    if kind == "customer":
        return {}
    customer = await env.change(1, CUSTOMER)
    await env.enqueue(customer)
    await env.run_due()
    refs = {"customer_id": str(customer.entity_id)}
    if kind != "payment":
        return refs
    invoice = await _made(env, "invoice", {**NO_KEY["invoice"], "number": "INV-77", **refs})
    await _enqueue_made(env, invoice)
    await env.run_due()
    return {"invoice_id": str(invoice.entity_id)}


async def _pushed_with_its_echo_first(
    env: Env, path: str, kind: EntityType = "job", *, renamed_there: str | None = None
) -> tuple[Applied, Applied]:
    """A record of ``kind`` made at the origin without a first-contact key (NO_KEY),
    pushed to Ascora by EchoBeforeTheLink through ``path`` (the set-based apply, or the
    change-by-change replay); its user renames the job there before the webhook when
    ``renamed_there``. Returns (the origin's change, the echo's)."""
    refs = await _named_records(env, kind)
    made = await _made(env, kind, {**NO_KEY[kind], **refs})

    async def echo(external_id: str) -> Applied:
        if renamed_there is not None:
            env.crm.sim.update("job", external_id, {"jobName": renamed_there})
        change = await _ascora_change(env, kind, external_id, f"ascora-{external_id}")
        if path == "batch":
            [applied] = await Processor(env.pool)._apply_batch([_parsed(change)])
            assert applied is not None
            return applied
        async with env.pool.acquire() as conn, conn.transaction():
            [parsed] = await resolve_refs(conn, [_parsed(change)])
            assert parsed.change is not None
            # The path a batch Postgres rejected is replayed on: change by change.
            return await apply_change(conn, parsed.change, Policy())

    pusher = EchoBeforeTheLink(env.pool, env.clients, env.pusher.policy)
    pusher.kind, pusher.echo, pusher.echoed = kind, echo, []
    await _enqueue_made(env, made)
    await env.run_due(pusher)
    [echoed] = pusher.echoed
    return made, echoed


@pytest.mark.parametrize("kind", ["job", "customer", "invoice", "payment"])
@pytest.mark.parametrize("path", ["batch", "one_by_one"])
async def test_the_echo_of_a_create_applied_before_its_link_is_saved_is_no_second_record(
    env: Env, path: str, kind: EntityType
) -> None:
    """A job has no first-contact key (two jobs may share a title), nor has a customer
    without an email, an invoice without a number (Ascora numbers it: the echo carries a
    number ours lacks) or a payment without a reference. So the echo of our create,
    reaching the processor before the push linked it, made a second canonical record
    (invariant 6), and the push's link then broke entity_links' key on Ascora's id: the
    push failed "unexpectedly" on every lease, for ever (since job13: a link_taken dead
    letter)."""
    made, echoed = await _pushed_with_its_echo_first(env, path, kind)
    [created] = env.crm.sim.live(kind)
    assert echoed.entity_id == made.entity_id, f"the echo made a second canonical {kind}"
    table = {"customer": "customers", "job": "jobs", "invoice": "invoices"}.get(kind, "payments")
    records = await env.pool.fetchval(
        f"SELECT count(*) FROM {table} WHERE tenant_id = $1 AND deleted_at IS NULL",  # noqa: S608
        env.tenant_id,
    )
    assert records == 1
    link = await env.pool.fetchrow(
        "SELECT entity_id, external_id, last_pushed_version FROM entity_links"
        " WHERE connection_id = $1 AND entity_type = $2 AND entity_id = $3",
        env.target,
        kind,
        made.entity_id,
    )
    assert link is not None, "the push did not link what it wrote"
    assert link["external_id"] == created[f"{kind}Id"]
    assert link["last_pushed_version"] == 1
    dead = await env.pool.fetch("SELECT reason, detail FROM dead_letters")
    assert [tuple(d) for d in dead] == []
    assert await env.job() is None, "the push was not finished"


async def test_a_push_whose_record_there_another_record_holds_is_parked_once(env: Env) -> None:
    """Renamed at Ascora before its webhook left, the echo is no longer recognised as our
    write and makes a record of its own; the push cannot link what it wrote. It is parked
    once, naming both records, instead of failing on every lease for ever."""
    made, echoed = await _pushed_with_its_echo_first(
        env, "batch", renamed_there="Gutter clean j3 (rear)"
    )
    assert echoed.entity_id != made.entity_id
    [dead] = await env.pool.fetch(
        "SELECT reason, detail FROM dead_letters WHERE stage = 'outbound' AND connection_id = $1",
        env.target,
    )
    assert dead["reason"] == "link_taken"
    assert str(made.entity_id) in dead["detail"]
    assert str(echoed.entity_id) in dead["detail"]
    assert await env.job() is None, "the push is still queued: retried for ever"
