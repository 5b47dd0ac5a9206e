"""The ledger (DESIGN invariant 13) against the real Kafka and PostgreSQL: after a flow
through every stage (webhooks and internal changes on Kafka, normalised, applied, relayed,
routed, pushed to a provider simulator) it balances and settles; an envelope the processor
consumed but nothing applied is caught as unaccounted, and so is a routed change that
left no push.

The stages run here as the services run them, one batch at a time with real Kafka
coordinates and offsets committed in the services' consumer groups (unique per test), so
the ledger reads exactly what it reads in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from crmsync.application.connection_runtime import stored_clients
from crmsync.application.context import KafkaTarget
from crmsync.application.ledger import Ledger
from crmsync.application.ledger_io import ledger
from crmsync.common.accounting import record_inbound_skips
from crmsync.common.crypto import KeyRing
from crmsync.common.kafka import RenewableProducer, make_consumer, make_producer
from crmsync.common.pushes import claim
from schemas import topics
from schemas.changes import ChangeEvent, InternalChange
from schemas.envelope import WebhookEnvelope
from schemas.records import CanonicalRecord
from services.outbound.pusher import Pusher, PushPolicy
from services.outbound.queue import Router, enqueue, push_rows
from services.processor.deadletters import Source
from services.processor.housekeeping import prune_inbound_skips
from services.processor.normalize import Normalizer
from services.processor.outbox import OutboxRelay
from services.processor.pipeline import Processor
from tests.conftest import started
from tests.e2e.sync_harness import SimulatedCrm, start_simulator
from tests.integration.erp_to_ascora import CALLOUT_INVOICE, erp_and_ascora
from tests.integration.test_admin_api import new_connection, running_admin

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
FIXTURE = Path(__file__).parents[1] / "fixtures" / "ascora" / "customer_updated.json"
T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@dataclass
class Flow:
    pool: asyncpg.Pool
    kafka: KafkaTarget
    producer: AIOKafkaProducer
    tenant_id: uuid.UUID
    erp: uuid.UUID  # internal publisher
    ascora: uuid.UUID  # webhooks in, pushes out (the simulator)
    crm: SimulatedCrm
    pusher: Pusher
    started: datetime
    database_url: str
    tenant: str  # its slug

    def topic(self, name: str) -> str:
        return self.kafka.topic(name)

    # -- what ingest writes ---------------------------------------------------------------

    async def internal_change(
        self,
        event_id: str,
        external_id: str,
        data: dict[str, Any],
        *,
        second: int = 0,
        entity_type: str = "customer",
        refs: dict[str, str] | None = None,
    ) -> None:
        change = InternalChange(
            tenant_id=self.tenant_id,
            connection_id=self.erp,
            received_at=datetime.now(UTC),
            change=ChangeEvent.model_validate(
                {
                    "event_id": event_id,
                    "entity_type": entity_type,
                    "op": "upsert",
                    "external_id": external_id,
                    "occurred_at": T0 + timedelta(seconds=second),
                    "data": data,
                    "refs": refs or {},
                }
            ),
        )
        key = f"{self.tenant_id}:{entity_type}:{external_id}".encode()
        await self.producer.send_and_wait(
            self.topic(topics.CHANGES_INTERNAL.name), change.model_dump_json().encode(), key=key
        )

    async def webhook(self, body: bytes, delivery: str) -> None:
        envelope = WebhookEnvelope(
            tenant_id=self.tenant_id,
            connection_id=self.ascora,
            provider="ascora",
            provider_event_id=delivery,
            received_at=datetime.now(UTC),
            content_type="application/json",
            headers={"content-type": "application/json", "webhook-id": delivery},
            body=body,
        )
        await self.producer.send_and_wait(
            self.topic(topics.WEBHOOKS_RAW.name),
            envelope.model_dump_json().encode(),
            key=str(self.ascora).encode(),
        )

    # -- the services' stages ---------------------------------------------------------------

    async def drain(
        self, name: str, group: str, handle: Callable[[list[Source]], Awaitable[None]]
    ) -> int:
        """Consume ``name`` from ``group``'s committed offsets to the end, hand the records
        to ``handle`` as one batch, then commit: what a faust agent or outbound does."""
        consumer = make_consumer(self.kafka.bootstrap_servers, group_id=group)
        async with started(consumer):
            topic = self.topic(name)
            metadata = await consumer._client.fetch_all_metadata()
            tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic))]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            sources: list[Source] = []
            for tp in tps:
                committed = await consumer.committed(tp)
                consumer.seek(tp, committed or 0)
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    # Named as Kafka names the topic (prefixed), as faust's events are.
                    sources.extend(
                        Source(topic, m.partition, m.offset, m.key, m.value or b"")
                        for m in batch.get(tp, [])
                    )
            await handle(sources)
            await consumer.commit({tp: ends[tp] for tp in tps})
            return len(sources)

    async def process(self) -> None:
        group = self.kafka.processor_group
        normalizer = Normalizer(self.pool, None)

        async def normalize(sources: list[Source]) -> None:
            for o in await normalizer.handle(sources):
                await self.producer.send_and_wait(
                    self.topic(topics.CHANGES_NORMALIZED.name), o.value, key=o.key
                )

        def apply(kind: str) -> Callable[[list[Source]], Awaitable[None]]:
            async def run(sources: list[Source]) -> None:
                if sources:
                    await Processor(self.pool).handle(kind, sources)

            return run

        await self.drain(topics.WEBHOOKS_RAW.name, group, normalize)
        for spec in (topics.CHANGES_INTERNAL, topics.CHANGES_NORMALIZED):
            await self.drain(spec.name, group, apply(spec.name))

    async def relay(self) -> None:
        relay = OutboxRelay(
            self.pool,
            RenewableProducer(lambda: self.producer),
            topic=self.topic(topics.RECORDS_CHANGED.name),
        )
        while await relay.publish_pending():
            pass

    async def route(self) -> None:
        router = Router(self.pool)

        async def targets(sources: list[Source]) -> None:
            rows = []
            for s in sources:
                record = CanonicalRecord.model_validate_json(s.value)
                rows.extend(push_rows(record, await router.targets(record)))
            await enqueue(self.pool, rows)

        await self.drain(topics.RECORDS_CHANGED.name, self.kafka.outbound_group, targets)

    async def push(self) -> None:
        while jobs := (await claim(self.pool, 100, lease_seconds=5.0)).jobs:
            for job in jobs:
                await self.pusher.run(job)

    async def everything(self) -> None:
        await self.process()
        await self.relay()
        await self.route()
        await self.push()

    def audit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``crmsync audit`` as an operator runs it, on this test's database and topics."""
        env = {
            **os.environ,
            "CRMSYNC_DATABASE_URL": self.database_url,
            "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
            "CRMSYNC_KAFKA_TOPIC_PREFIX": self.kafka.topic_prefix,
            "CRMSYNC_PROCESSOR_APP_ID": self.kafka.processor_group,
            "CRMSYNC_OUTBOUND_CONSUMER_GROUP": self.kafka.outbound_group,
        }
        return subprocess.run(
            [CRMSYNC, "audit", "--since", self.started.isoformat(), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    async def ledger(self, **kwargs: Any) -> Ledger:
        return await ledger(
            self.pool, self.kafka, tenant=self.tenant_id, since=self.started, **kwargs
        )


@pytest.fixture
async def flow(
    pool: asyncpg.Pool, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[Flow]:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    crm = await start_simulator("ascora", company_code="DEMO")
    erp, ascora = await erp_and_ascora(pool, keyring, crm, "DEMO")
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaTarget(
        kafka_bootstrap,
        topic_prefix,
        processor_group=f"ledger-processor-{suffix}",
        outbound_group=f"ledger-outbound-{suffix}",
    )
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    session = aiohttp.ClientSession()
    pusher = Pusher(pool, stored_clients(pool, keyring, session), PushPolicy(max_attempts=2))
    try:
        yield Flow(
            pool,
            kafka,
            producer,
            erp.tenant_id,
            erp.id,
            ascora.id,
            crm,
            pusher,
            datetime.now(UTC) - timedelta(seconds=1),
            database_url,
            erp.tenant,
        )
    finally:
        await producer.stop()
        await session.close()
        await crm.runner.cleanup()


def webhook_body() -> bytes:
    return json.dumps(json.loads(FIXTURE.read_text())["body"]).encode()


def counts(ledger: Ledger, connection: uuid.UUID) -> dict[str, Any]:
    [c] = [c for c in ledger.connections if c.connection_id == connection]
    i, o = c.inbound, c.outbound
    return {
        "in": (i.records, i.accepted, i.applied, i.duplicates, dict(i.skipped)),
        "in_rest": (i.dead_lettered, i.in_flight, i.unaccounted),
        "out": (o.changes, o.pushed, dict(o.skipped), o.dead_lettered, o.pending, o.unaccounted),
    }


async def test_a_processed_flow_balances_and_settles(flow: Flow) -> None:
    customer = {"name": "Harbour Plumbing", "email": "office@harbour.example"}
    await flow.internal_change("erp-1", "c-1", customer)
    await flow.internal_change("erp-1", "c-1", customer)  # a publisher's retry
    await flow.internal_change("erp-2", "c-1", {**customer, "phone": "+61 2 5550 2"}, second=1)
    await flow.webhook(webhook_body(), "msg_1")
    await flow.webhook(webhook_body(), "msg_1")  # Ascora's redelivery
    await flow.webhook(b"not json", "msg_2")

    before = await flow.ledger()
    assert before.balanced, before.problems()
    assert before.in_flight == 6  # accepted, nothing consumed yet

    await flow.everything()
    after = await flow.ledger()

    assert after.settled, after.problems()
    assert counts(after, flow.erp) == {
        "in": (3, 3, 2, 1, {}),
        "in_rest": (0, 0, 0),
        # Two changes of the ERP's customer (echo) and one of Ascora's (not pushed to an
        # internal connection).
        "out": (3, 0, {"echo": 2, "settings": 1}, 0, 0, 0),
    }
    assert counts(after, flow.ascora) == {
        "in": (3, 3, 1, 1, {}),
        "in_rest": (1, 0, 0),
        # The ERP's two versions reached Ascora in one push of the latest.
        "out": (3, 2, {"echo": 1}, 0, 0, 0),
    }
    assert len(flow.crm.writes()) == 1
    done = flow.audit("--tenant", flow.tenant, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["balanced"] is True


async def test_a_change_waiting_for_a_record_it_names_is_in_flight_until_applied(
    flow: Flow,
) -> None:
    payment = {"amount": 500, "currency": "AUD", "status": "succeeded"}
    await flow.internal_change(
        "erp-p1", "p-1", payment, entity_type="payment", refs={"invoice_id": "i-1"}
    )
    await flow.process()  # consumed, its offset committed, parked: not applied
    waiting = await flow.ledger()
    assert waiting.balanced, waiting.problems()
    assert counts(waiting, flow.erp)["in"][:4] == (1, 1, 0, 0)
    assert counts(waiting, flow.erp)["in_rest"] == (0, 1, 0)
    assert not waiting.settled

    await flow.internal_change("erp-i1", "i-1", {"number": "INV-1"}, entity_type="invoice")
    await flow.process()
    assert await Processor(flow.pool).release(100) == 1
    applied = await flow.ledger()
    assert applied.balanced, applied.problems()
    assert counts(applied, flow.erp)["in"][:4] == (2, 2, 2, 0)
    assert counts(applied, flow.erp)["in_rest"] == (0, 0, 0)


async def test_an_envelope_consumed_but_never_applied_is_unaccounted(flow: Flow) -> None:
    await flow.webhook(webhook_body(), "msg_1")
    await flow.everything()
    assert (await flow.ledger()).settled

    # The next envelope is consumed (its offset committed) and nothing applies it: what a
    # processor that acknowledged a batch it failed would leave behind.
    await flow.webhook(webhook_body(), "msg_lost")
    pending = await flow.ledger()
    assert pending.balanced
    assert counts(pending, flow.ascora)["in_rest"] == (0, 1, 0)

    async def lose(sources: Sequence[Source]) -> None:
        assert len(sources) == 1

    await flow.drain(topics.WEBHOOKS_RAW.name, flow.kafka.processor_group, lose)
    lost = await flow.ledger()

    assert not lost.balanced
    assert counts(lost, flow.ascora)["in_rest"] == (0, 0, 1)
    [problem] = lost.problems()
    assert str(flow.ascora) in problem
    assert "inbound" in problem
    assert "webhooks.raw" in problem
    # The CLI says so by its exit status, naming the connection; with or without a tenant.
    for tenant in (("--tenant", flow.tenant), ()):
        done = flow.audit(*tenant, "--connection", str(flow.ascora))
        assert done.returncode == 1, done.stdout + done.stderr
        assert str(flow.ascora) in done.stderr

    # Had the normalizer dropped it on purpose (its record gone at the provider), the row
    # it writes for that accounts for it.
    await record_inbound_skips(flow.pool, [(flow.ascora, "msg_lost", "gone")])
    explained = await flow.ledger()
    assert explained.settled, explained.problems()
    assert dict(counts(explained, flow.ascora)["in"][4]) == {"gone": 1}


async def test_a_routed_change_that_left_no_push_is_unaccounted(flow: Flow) -> None:
    await flow.internal_change("erp-1", "c-1", {"name": "Harbour Plumbing"})
    await flow.process()
    await flow.relay()

    async def lose(sources: Sequence[Source]) -> None:
        assert len(sources) == 1

    await flow.drain(topics.RECORDS_CHANGED.name, flow.kafka.outbound_group, lose)
    lost = await flow.ledger()

    assert not lost.balanced
    assert counts(lost, flow.ascora)["out"] == (1, 0, {}, 0, 0, 1)
    [problem] = lost.problems()
    assert str(flow.ascora) in problem
    assert "outbound" in problem


async def test_the_admin_api_serves_the_tenants_ledger(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    async with running_admin(
        database_url, kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix
    ) as admin:
        created = await new_connection(admin)
        report = await admin.ok("GET", "/v1/audit/ledger", key=admin.read_key)
        assert report["balanced"] is True
        assert [c["connection_id"] for c in report["connections"]] == [created["id"]]
        assert report["connections"][0]["inbound"]["accepted"] == 0
        # Another tenant's connection is not found, as everywhere.
        status, _ = await admin.call(
            "GET", f"/v1/audit/ledger?connection={created['id']}", key=admin.other_key
        )
        assert status == 404


async def test_skipped_items_are_forgotten_with_the_dedup_rows(flow: Flow) -> None:
    await record_inbound_skips(
        flow.pool, [(flow.ascora, "old", "gone"), (flow.ascora, "new", "not_synced")]
    )
    await flow.pool.execute(
        "UPDATE inbound_skips SET skipped_at = now() - interval '8 days'"
        " WHERE provider_event_id = 'old'"
    )
    assert await prune_inbound_skips(flow.pool, retention_days=7) == 1
    left = await flow.pool.fetch("SELECT provider_event_id, reason FROM inbound_skips")
    assert [tuple(r) for r in left] == [("new", "not_synced")]


async def test_a_version_held_back_from_a_target_never_linked_is_accounted_for(
    flow: Flow,
) -> None:
    # Ascora never edits a payment, so a pending one is held until it has settled
    # (ApiSpec.holds_back): nothing sent, no link, the job finished, a sync log row
    # `held`. That is a fate of its own, not a lost change.
    await flow.internal_change("erp-c", "c-1", {"name": "Harbour Plumbing"})
    await flow.internal_change(
        "erp-i", "i-1", CALLOUT_INVOICE, entity_type="invoice", refs={"customer_id": "c-1"}
    )
    await flow.everything()
    payment = {"amount": 5000, "currency": "NZD", "status": "pending", "reference": "CARD-1"}
    await flow.internal_change(
        "erp-p", "p-1", payment, entity_type="payment", refs={"invoice_id": "i-1"}
    )
    await flow.everything()
    outcomes = await flow.pool.fetch(
        "SELECT outcome FROM sync_log WHERE entity_type = 'payment' AND direction = 'out'"
    )
    assert [r["outcome"] for r in outcomes] == ["held"]
    held = await flow.ledger()

    assert held.settled, held.problems()
    assert counts(held, flow.ascora)["out"][2].get("held") == 1
