"""A push on its way to a system meets an edit its user made there meanwhile (issue 17).

Our push of one field's edit reaches QuickBooks after its user changed another field
there, before QuickBooks' webhook of that edit reached us. The pusher writes the whole
record, so until now the user's edit was overwritten at QuickBooks and, once the webhook
came (hydrated: QuickBooks then held our write), lost everywhere. Field-level merge says
both edits survive: the push reads the target first, hands the state it finds to the
processor (as a reconciliation would), and pushes the merged record next.

Real PostgreSQL and Kafka, the QuickBooks simulator behind the real QuickBooks client, the
processor's apply step and the outbound pusher.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from connectors.registry import connector
from connectors.runtime import Clients, ConnectionInfo
from connectors.spec import EntityType
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.application.sync.runner import Observer
from crmsync.common.canonical import canonical_values
from crmsync.common.crypto import KeyRing
from crmsync.common.kafka import make_consumer, make_producer
from crmsync.common.pushes import claim
from crmsync.demo import sims
from schemas.records import CanonicalRecord
from services.outbound.pusher import Pusher, PushPolicy
from services.outbound.queue import Router, enqueue, push_rows
from services.processor.apply import Applied
from services.processor.deadletters import Source
from services.processor.decide import InboundChange, Outcome
from services.processor.pipeline import Parsed, Processor, parse_internal
from tests.conftest import TopicFactory, started
from tests.integration.erp_to_ascora import erp_and_simulator

CUSTOMER = {"name": "Harbour Plumbing", "email": "office@harbour.example", "phone": "+61 2 5550 1"}
USER_PHONE = "+61 2 5550 9"  # the user's edit at QuickBooks
OUR_EMAIL = "accounts@harbour.example"  # the edit on its way to QuickBooks


@dataclass
class Env:
    pool: asyncpg.Pool
    qb: sims.RunningSim  # the target's simulator (QuickBooks unless a test says otherwise)
    tenant_id: uuid.UUID
    origin: uuid.UUID  # an internal publisher
    target: uuid.UUID  # the simulated QuickBooks
    pusher: Pusher
    bootstrap: str
    topic: str  # where the pusher hands what it read (changes.normalized in the service)
    read_upto: int = 0

    async def publish(
        self,
        n: int,
        data: dict[str, Any],
        entity_type: EntityType = "customer",
        external_id: str = "cust-1",
        op: Literal["upsert", "delete"] = "upsert",
        **refs: str,
    ) -> uuid.UUID:
        """Apply a change from the origin of the record ``entity_type`` ``external_id`` (the
        origin's id), naming ``refs`` (field: the origin's id), and queue its pushes; the
        record's id."""
        change = InboundChange(
            tenant_id=self.tenant_id,
            connection_id=self.origin,
            dedup_key=f"erp-{n}",
            entity_type=entity_type,
            op=op,
            external_id=external_id,
            source_ts=datetime.now(UTC),
            data=data,
            received_at=datetime.now(UTC),
            refs=refs,
        )
        [applied] = await Processor(self.pool)._apply_batch([_parsed(change)])
        assert applied is not None
        assert applied.change_id is not None
        payload = await self.pool.fetchval(
            "SELECT payload FROM outbox WHERE change_id = $1", applied.change_id
        )
        record = CanonicalRecord.model_validate_json(json.dumps(payload))
        await enqueue(self.pool, push_rows(record, await Router(self.pool).targets(record)))
        return record.entity_id

    async def push(self) -> int:
        """Run every queued push now (a rescheduled one too); how many ran."""
        await self.pool.execute("UPDATE push_jobs SET next_attempt_at = now()")
        jobs = (await claim(self.pool, 10, lease_seconds=5)).jobs
        for job in jobs:
            await self.pusher.run(job)
        return len(jobs)

    async def handed(self) -> list[Applied]:
        """What the pusher handed to the processor since the last call, applied."""
        async with started(make_consumer(self.bootstrap, self.topic, group_id=None)) as consumer:
            batch = await consumer.getmany(timeout_ms=2000)
            found = [r for rs in batch.values() for r in rs][self.read_upto :]
        self.read_upto += len(found)
        parsed = [
            parse_internal(Source(self.topic, r.partition, r.offset, r.key, r.value))
            for r in found
            if r.value is not None
        ]
        return [a for a in await Processor(self.pool)._apply_batch(parsed) if a is not None]

    def at_quickbooks(self) -> dict[str, Any]:
        """The customer's email and phone as the target holds them (read by its mapper)."""
        [customer] = self.qb.sim.live("customer")
        data = connector(self.qb.provider).mapper.to_canonical("customer", customer, {}).data
        return {"email": data.get("email"), "phone": data.get("phone")}

    def user_edits_phone(self) -> None:
        """The target's user changes the customer's phone there (its webhook not sent)."""
        [customer] = self.qb.sim.live("customer")
        edit, id_field = USER_PHONE_EDITS[self.qb.provider]
        self.qb.sim.update("customer", customer[id_field], edit)

    async def here(self) -> dict[str, Any]:
        data = await self.pool.fetchval(
            "SELECT data FROM customers WHERE tenant_id = $1", self.tenant_id
        )
        return {"email": data["email"], "phone": data["phone"]}

    async def outcomes(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT outcome FROM sync_log WHERE connection_id = $1 AND direction = 'out'"
            " ORDER BY id",
            self.target,
        )
        return [r["outcome"] for r in rows]


# The user's phone edit in each target's own terms, and the id field of its customers.
USER_PHONE_EDITS: dict[str, tuple[dict[str, Any], str]] = {
    "quickbooks": ({"PrimaryPhone": {"FreeFormNumber": USER_PHONE}, "sparse": True}, "Id"),
    "stripe": ({"phone": USER_PHONE}, "id"),
    "xero": ({"Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": USER_PHONE}]}, "ContactID"),
}


@pytest.fixture
def provider() -> str:
    """The target's provider; a test parametrizes it to run against another one."""
    return "quickbooks"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """The target simulator's options; a test module overrides it (a clock, say)."""
    return {}


def _parsed(change: InboundChange) -> Parsed:
    return Parsed(Source("test", 0, 0, None, b"{}"), change)


@pytest.fixture
async def env(
    pool: asyncpg.Pool,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    provider: str,
    sim_options: dict[str, Any],
) -> AsyncIterator[Env]:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    running = await sims.start_simulator(provider, **sim_options)
    # Webhooks off: the user's edit's webhook is still on its way.
    erp, target = await erp_and_simulator(pool, keyring, running, "qbo")
    topic = await new_topic("normalized")
    session = aiohttp.ClientSession()
    producer: AIOKafkaProducer = make_producer(kafka_bootstrap)
    await producer.start()
    clients: Clients = stored_clients(pool, keyring, session)
    pusher = Pusher(pool, clients, PushPolicy(max_attempts=5), observe=Observer(producer, topic))
    try:
        yield Env(pool, running, erp.tenant_id, erp.id, target, pusher, kafka_bootstrap, topic)
    finally:
        await producer.stop()
        await session.close()
        await running.runner.cleanup()


@pytest.mark.parametrize("provider", ["quickbooks", "stripe", "xero"])
async def test_a_push_meeting_a_user_edit_at_the_target_keeps_both_edits(env: Env) -> None:
    await env.publish(1, CUSTOMER)
    assert await env.push() == 1  # created at the target
    # The user changes the phone at the target; its webhook has not reached us when our
    # push of the email change (made in the internal service) goes.
    env.user_edits_phone()
    await env.publish(2, {**CUSTOMER, "email": OUR_EMAIL})
    await env.push()

    # What the push found at QuickBooks went through the merge: the user's phone is ours.
    [applied] = await env.handed()
    assert (applied.outcome, applied.version) == (Outcome.APPLIED, 3)
    assert await env.here() == {"email": OUR_EMAIL, "phone": USER_PHONE}
    # ... and the merged record is what QuickBooks is brought to next.
    await env.push()
    both = {"email": OUR_EMAIL, "phone": USER_PHONE}
    assert env.at_quickbooks() == both
    assert await env.outcomes() == ["pushed", "changed_there", "pushed"]

    # QuickBooks' state read again (its webhook, a reconciliation) is our own write: nothing
    # changes, nothing is handed again, nothing more is pushed.
    assert await env.push() == 0
    assert await env.handed() == []
    assert await env.here() == both


async def test_a_push_that_finds_the_target_as_it_left_it_writes_at_once(env: Env) -> None:
    """No edit at the target: one read, one write, nothing handed to the processor."""
    await env.publish(1, CUSTOMER)
    await env.push()
    await env.publish(2, {**CUSTOMER, "email": OUR_EMAIL})
    await env.push()
    assert env.at_quickbooks() == {"email": OUR_EMAIL, "phone": CUSTOMER["phone"]}
    assert await env.handed() == []
    assert await env.outcomes() == ["pushed", "pushed"]
    assert await env.push() == 0


async def test_an_edit_between_our_look_and_our_write_is_not_written_over(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's edit lands after the push read QuickBooks and before it writes: the write
    carries the SyncToken read, QuickBooks answers 5010, nothing is written, and the next
    run finds the edit and hands it to the merge (before, the client read again and wrote,
    overwriting the edit)."""
    await env.publish(1, CUSTOMER)
    await env.push()
    handle = await env.pusher.clients.get(await _info(env))
    [customer] = env.qb.sim.live("customer")
    looks: list[str] = []
    fetch = handle.client.fetch

    async def look_then_user_edits(entity_type: Any, external_id: str) -> Any:
        record = await fetch(entity_type, external_id)
        if not looks:
            env.qb.sim.update(
                "customer",
                customer["Id"],
                {"PrimaryPhone": {"FreeFormNumber": USER_PHONE}, "sparse": True},
            )
        looks.append(external_id)
        return record

    monkeypatch.setattr(handle.client, "fetch", look_then_user_edits)
    await env.publish(2, {**CUSTOMER, "email": OUR_EMAIL})
    await env.push()
    assert env.at_quickbooks() == {"email": CUSTOMER["email"], "phone": USER_PHONE}
    assert await env.handed() == []

    await env.push()  # looks again: the edit is handed to the merge
    [applied] = await env.handed()
    assert applied.outcome == Outcome.APPLIED
    await env.push()
    both = {"email": OUR_EMAIL, "phone": USER_PHONE}
    assert env.at_quickbooks() == both
    assert await env.here() == both
    assert await env.outcomes() == ["pushed", "changed_there", "pushed"]


async def _info(env: Env) -> ConnectionInfo:
    info = await load_connection(env.pool, env.target, tenant_id=env.tenant_id)
    assert info is not None
    return info


INVOICE = {
    "number": "INV-17",
    "issued_on": "2026-12-01",
    "due_on": "2026-12-15",
    "lines": [
        {"description": "Labour", "quantity": "2", "unit_amount": 5000, "tax_amount": 1000},
        {"description": "Parts", "quantity": "1", "unit_amount": 2550, "tax_amount": 0},
    ],
}
# Each simulator's home currency (the company's, or the account's default).
CURRENCIES = {"stripe": "USD", "quickbooks": "USD"}
LOOKING = sorted(
    slug
    for slug in ("quickbooks", "myob", "stripe", "ascora", "hubspot", "xero")
    if (api := connector(slug).api) is not None and api.update_precondition != "none"
)


@pytest.mark.parametrize("provider", LOOKING)
async def test_a_read_after_our_update_holds_what_its_answer_said(
    pool: asyncpg.Pool, provider: str
) -> None:
    """A push compares the target's state with the link's snapshot, which is the answer to
    our last write: a provider whose read says anything else would have every update
    handed to the merge first (one extra round trip and a wait per push)."""
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    running = await sims.start_simulator(provider)
    running.sim.webhook_url = None
    session = aiohttp.ClientSession()
    try:
        target = await sims.connect(
            pool, keyring, running, tenant=f"t-{uuid.uuid4().hex[:8]}", name="target",
            ingest_url="http://127.0.0.1:9",
        )  # fmt: skip
        info = await load_connection(pool, target, tenant_id=None)
        assert info is not None
        client = (await stored_clients(pool, keyring, session).get(info)).client
        created = await client.create("customer", CUSTOMER, {}, "k")
        answer = await client.update(
            "customer", created.external_id, {**CUSTOMER, "email": OUR_EMAIL}, {}
        )
        read = await client.fetch("customer", created.external_id)
        assert canonical_values("customer", dict(read.data)) == canonical_values(
            "customer", dict(answer.data)
        )
        api = info.connector().api
        assert api is not None
        if "invoice" in api.entity_types:
            refs = {"customer_id": created.external_id}
            invoice = {**INVOICE, "currency": CURRENCIES.get(provider, "AUD")}
            made = await client.create("invoice", invoice, refs, "i")
            answer = await client.update(
                "invoice", made.external_id, {**invoice, "due_on": "2026-12-22"}, refs
            )
            read = await client.fetch("invoice", made.external_id)
            assert canonical_values("invoice", dict(read.data)) == canonical_values(
                "invoice", dict(answer.data)
            )
            # The look compares references too: the read names the customer the answer did.
            assert read.refs == answer.refs
    finally:
        await session.close()
        await running.runner.cleanup()


class _DiedError(Exception):
    """The outbound process stopping at that point (SIGKILL, an OOM): nothing after runs."""


@pytest.mark.parametrize("dies", ["before_the_hand_off", "after_the_hand_off"])
async def test_outbound_dying_around_the_hand_off_pushes_once_and_loses_nothing(
    env: Env, dies: str
) -> None:
    """Outbound dies after it read the target and found the user's edit: before the state
    reached Kafka, or after, before the job's row said so. Its lease runs out and the push
    runs again: the edit is handed over (again: a duplicate the processor drops), and the
    merged record is written once."""
    await env.publish(1, CUSTOMER)
    await env.push()
    [customer] = env.qb.sim.live("customer")
    env.qb.sim.update(
        "customer",
        customer["Id"],
        {"PrimaryPhone": {"FreeFormNumber": USER_PHONE}, "sparse": True},
    )
    await env.publish(2, {**CUSTOMER, "email": OUR_EMAIL})
    observe = env.pusher.observe
    assert observe is not None

    async def dying(info: ConnectionInfo, entity_type: Any, record: Any) -> str:
        if dies == "after_the_hand_off":
            await observe(info, entity_type, record)
        raise _DiedError

    env.pusher.observe = dying
    writes_before = _writes(env)
    with pytest.raises(_DiedError):
        await env.push()
    assert _writes(env) == writes_before  # nothing was written before the hand-off
    env.pusher.observe = observe

    await env.push()  # the lease ran out: the push runs again
    applied = await env.handed()
    outcomes = sorted(a.outcome for a in applied)
    if dies == "after_the_hand_off":
        assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE]
    else:
        assert outcomes == [Outcome.APPLIED]
    await env.push()
    both = {"email": OUR_EMAIL, "phone": USER_PHONE}
    assert env.at_quickbooks() == both
    assert await env.here() == both
    assert _writes(env) == writes_before + 1  # the merged record, once
    assert await env.outcomes() == ["pushed", "changed_there", "pushed"]
    assert await env.push() == 0


def _writes(env: Env) -> int:
    """POSTs to QuickBooks that it took (a create or an update)."""
    return sum(
        1 for r in env.qb.sim.log.requests if r["method"] == "POST" and r.get("status") == 200
    )


async def test_a_reference_changed_at_the_target_is_not_written_over(env: Env) -> None:
    """The user moves the invoice to another customer at QuickBooks (its webhook still on
    its way) while our push of a due-date edit goes: the look compares references too, so
    the move goes through the merge and QuickBooks keeps it, with our due date (before, a
    state that differed only in a reference was taken for the one last heard, and the push
    put the invoice back on the first customer)."""
    first = await env.publish(1, CUSTOMER)
    other = {"name": "Bayview Landscapes", "email": "team@bayview.example", "phone": "+61 2 5"}
    second = await env.publish(2, other, external_id="cust-2")
    await env.push()
    invoice = {**INVOICE, "currency": "USD", "customer_id": str(first)}
    await env.publish(3, invoice, "invoice", "inv-1")
    await env.push()
    [at_qb] = env.qb.sim.live("invoice")
    [moved_to] = [c["Id"] for c in env.qb.sim.live("customer") if c["DisplayName"] == other["name"]]
    env.qb.sim.update("invoice", at_qb["Id"], {"CustomerRef": {"value": moved_to}, "sparse": True})

    await env.publish(4, {**invoice, "due_on": "2026-12-22"}, "invoice", "inv-1")
    await env.push()
    [applied] = await env.handed()
    assert applied.outcome == Outcome.APPLIED
    here = await env.pool.fetchval("SELECT data FROM invoices WHERE tenant_id = $1", env.tenant_id)
    assert (here["customer_id"], here["due_on"]) == (str(second), "2026-12-22")
    await env.push()
    [at_qb] = env.qb.sim.live("invoice")
    assert (at_qb["CustomerRef"]["value"], at_qb["DueDate"]) == (moved_to, "2026-12-22")
    assert await env.push() == 0


@pytest.mark.parametrize("provider", ["xero"])
async def test_an_invoice_update_at_xero_looks_without_a_call_more(env: Env) -> None:
    """Xero's budget is 60 calls a minute: its invoice update reads the invoice anyway (its
    lifecycle plan), and that read is the look's, so an update costs what it cost without
    a look (one GET, one POST), and a user's edit of the invoice there is still found."""
    customer = await env.publish(1, CUSTOMER)
    await env.push()
    invoice = {**INVOICE, "currency": "AUD", "customer_id": str(customer)}
    await env.publish(2, invoice, "invoice", "inv-1")
    await env.push()

    before = len(env.qb.sim.log.requests)
    await env.publish(3, {**invoice, "due_on": "2026-12-22"}, "invoice", "inv-1")
    await env.push()
    calls = [r["method"] for r in list(env.qb.sim.log.requests)[before:]]
    assert sorted(calls) == ["GET", "POST"]
    assert await env.handed() == []

    [at_xero] = env.qb.sim.live("invoice")
    env.qb.sim.update("invoice", at_xero["InvoiceID"], {"InvoiceNumber": "INV-17A"})
    await env.publish(4, {**invoice, "due_on": "2026-12-29"}, "invoice", "inv-1")
    await env.push()
    [applied] = await env.handed()
    assert applied.outcome == Outcome.APPLIED
    await env.push()
    [at_xero] = env.qb.sim.live("invoice")
    assert (at_xero["InvoiceNumber"], at_xero["DueDateString"][:10]) == ("INV-17A", "2026-12-29")
    here = await env.pool.fetchval("SELECT data FROM invoices WHERE tenant_id = $1", env.tenant_id)
    assert (here["number"], here["due_on"]) == ("INV-17A", "2026-12-29")


async def test_a_delete_meeting_a_user_edit_at_quickbooks_wins(env: Env) -> None:
    """Written down rather than changed (README, "A delete wins over an edit it meets"):
    the user edits the customer at QuickBooks just before our push of its delete. The
    delete is pushed without a look (QuickBooks makes the customer inactive, the edit on
    it), and the edit, handed to the processor as a full webhook would carry it, is stale:
    an edit of a deleted record is, whatever its time and the conflict policy. A look before
    the delete would hand over exactly this and change nothing."""
    await env.publish(1, CUSTOMER)
    await env.push()
    info = await _info(env)
    client = (await env.pusher.clients.get(info)).client
    env.user_edits_phone()
    [customer] = env.qb.sim.live("customer")
    edited = await client.fetch("customer", customer["Id"])

    await env.publish(2, {}, op="delete")
    await env.push()
    assert await env.handed() == []
    [customer] = env.qb.sim.live("customer")
    assert customer["Active"] is False
    assert env.at_quickbooks()["phone"] == USER_PHONE

    observe = env.pusher.observe
    assert observe is not None
    await observe(info, "customer", edited)  # the edit, as made
    await observe(info, "customer", await client.fetch("customer", customer["Id"]))  # as now
    assert sorted(a.outcome for a in await env.handed()) == [Outcome.NOOP, Outcome.STALE]
    gone = await env.pool.fetchval(
        "SELECT deleted_at IS NOT NULL FROM customers WHERE tenant_id = $1", env.tenant_id
    )
    assert gone
    assert await env.push() == 0


# The invoice of these tests in full (2 x 50.00 + 10.00 tax + 25.50), and in part.
PAID_IN_FULL, PAID_IN_PART = 13550, 5000


@pytest.mark.parametrize(
    ("provider", "paid"),
    [
        ("quickbooks", PAID_IN_PART),
        ("myob", PAID_IN_PART),
        ("ascora", PAID_IN_PART),
        ("quickbooks", PAID_IN_FULL),
        ("myob", PAID_IN_FULL),
    ],
)
async def test_an_amount_due_the_target_moved_for_our_payment_is_no_edit_there(
    env: Env, paid: int
) -> None:
    """Our payment's push moves the invoice's balance at the target by the target's own
    rules (QuickBooks `Balance`, MYOB `BalanceDueAmount`, Ascora `balanceDue`), and paid in
    full its status at QuickBooks and MYOB (which no write of ours sets there); the next
    push of the invoice found them unheard and handed them to the merge as the target's
    edit (`changed_there`, a round trip through the processor: ~4-5 per demo run). Declared
    own fields there, as at Stripe and Xero. (Ascora's Paid is compared: we write its
    status.)"""
    customer = await env.publish(1, CUSTOMER)
    await env.push()
    currency = CURRENCIES.get(env.qb.provider, "AUD")
    invoice = {
        **INVOICE,
        **{"status": "open", "subtotal": 12550, "tax": 1000, "total": PAID_IN_FULL},
        **{"currency": currency, "customer_id": str(customer)},
    }
    await env.publish(2, invoice, "invoice", "inv-1")
    await env.push()
    part = {"amount": paid, "currency": currency, "status": "succeeded"}
    await env.publish(
        3, {**part, "paid_at": "2026-12-02T10:00:00Z"}, "payment", "pay-1", invoice_id="inv-1"
    )
    await env.push()
    edited = {k: v for k, v in invoice.items() if k != "status"}  # paid: derived since
    await env.publish(4, {**edited, "due_on": "2026-12-22"}, "invoice", "inv-1")
    await env.push()
    assert await env.outcomes() == ["pushed"] * 4
    assert await env.handed() == []
    # What the target moved by itself, and what our write left alone there.
    [there] = env.qb.sim.live("invoice")
    info = await load_connection(env.pool, env.target, tenant_id=env.tenant_id)
    assert info is not None
    held = connector(env.qb.provider).mapper.to_canonical("invoice", there, info.settings).data
    assert (held["amount_due"], held["status"], held["due_on"]) == (
        PAID_IN_FULL - paid,
        "paid" if paid == PAID_IN_FULL else "open",
        "2026-12-22",
    )
