"""Stripe's whole-second clock against our push (issue 17): a user's edit made at Stripe in
the same second as our write to the record, after it, is an edit, not a stale or echoed
state. Real PostgreSQL, the Stripe simulator behind the real Stripe client, the webhook
through the processor's normaliser and apply step."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from connectors.runtime import Clients
from crmsync.application.connection_runtime import stored_clients
from crmsync.common.crypto import KeyRing
from crmsync.common.pushes import claim
from crmsync.demo import sims
from schemas import topics
from schemas.envelope import WebhookEnvelope
from services.outbound.pusher import Pusher, PushPolicy
from services.processor.apply import Applied
from services.processor.deadletters import Source
from services.processor.decide import Outcome
from services.processor.normalize import Normalizer
from services.processor.pipeline import Processor, parse_internal
from tests.e2e.sync_harness import SimulatedCrm
from tests.integration.applying import publish_customer
from tests.integration.erp_to_ascora import erp_and_simulator

CUSTOMER = {"name": "Harbour Plumbing", "email": "office@harbour.example", "phone": "+61 2 5550 1"}


@dataclass
class Env:
    pool: asyncpg.Pool
    stripe: SimulatedCrm
    tenant_id: uuid.UUID
    origin: uuid.UUID  # an internal publisher, with a millisecond clock
    target: uuid.UUID  # the simulated Stripe
    clients: Clients
    second: datetime  # the whole second Stripe's clock stands at

    async def publish(self, n: int, data: dict[str, Any], at: datetime) -> None:
        """Apply a change from the origin and push it to Stripe."""
        await publish_customer(self.pool, self.tenant_id, self.origin, n, data, at=at)
        pusher = Pusher(self.pool, self.clients, PushPolicy(max_attempts=3))
        for job in (await claim(self.pool, 10, lease_seconds=5)).jobs:
            await pusher.run(job)

    async def webhook(self, event: dict[str, Any]) -> Applied:
        """Stripe's webhook of ``event``, through the normaliser and the apply step."""
        body = json.dumps(event).encode()
        envelope = WebhookEnvelope(
            tenant_id=self.tenant_id,
            connection_id=self.target,
            provider="stripe",
            provider_event_id=event["id"],
            received_at=datetime.now(UTC),
            content_type="application/json",
            body=body,
        )
        raw = Source(topics.WEBHOOKS_RAW.name, 0, 0, None, envelope.model_dump_json().encode())
        [output] = await Normalizer(self.pool, self.clients).handle([raw])
        parsed = parse_internal(Source("changes.normalized", 0, 0, output.key, output.value))
        [applied] = await Processor(self.pool)._apply_batch([parsed])
        assert applied is not None
        return applied

    async def email(self, entity_id: uuid.UUID | None) -> str:
        data = await self.pool.fetchval("SELECT data FROM customers WHERE id = $1", entity_id)
        return str(data["email"])


@pytest.fixture
async def env(pool: asyncpg.Pool) -> AsyncIterator[Env]:
    # Stripe's clock stands still at a whole second a little ahead: every object and Event
    # of the test is stamped with it, as Stripe stamps everything of one second.
    second = datetime.fromtimestamp(math.floor(time.time()) + 3, UTC)
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    running = await sims.start_simulator("stripe", clock=lambda: second)
    stripe = SimulatedCrm(running.provider, running.sim, running.runner, running.base_url)
    # Webhooks off: the test hands Stripe's Events over itself.
    erp, target = await erp_and_simulator(pool, keyring, running, "stripe")
    session = aiohttp.ClientSession()
    try:
        yield Env(
            pool,
            stripe,
            erp.tenant_id,
            erp.id,
            target,
            stored_clients(pool, keyring, session),
            second,
        )
    finally:
        await session.close()
        await running.runner.cleanup()


def _latest_event(env: Env) -> dict[str, Any]:
    event: dict[str, Any] = env.stripe.sim.events[-1]  # type: ignore[attr-defined]
    return event


async def test_a_stripe_edit_in_the_same_second_as_our_push_is_applied(env: Env) -> None:
    """Our origin stamps its change half-way through the second Stripe stands at; we push
    it; Stripe's user then changes the email, and Stripe stamps that Event with the whole
    second, earlier than the origin's stamp. It is still the newer edit: it was made on top
    of what we wrote (and old code dropped it, so Postgres and every other system kept the
    old email while Stripe showed the new one)."""
    await env.publish(1, CUSTOMER, env.second + timedelta(milliseconds=500))
    [customer] = env.stripe.sim.live("customer")
    echo = await env.webhook(_latest_event(env))  # customer.created: our own write
    assert echo.outcome in (Outcome.ECHO, Outcome.NOOP)
    assert echo.change_id is None

    env.stripe.sim.update("customer", customer["id"], {"email": "accounts@harbour.example"})
    edited = await env.webhook(_latest_event(env))
    assert (edited.outcome, edited.version) == (Outcome.APPLIED, 2)
    assert await env.email(edited.entity_id) == "accounts@harbour.example"


async def test_a_stripe_event_from_before_our_push_in_the_same_second_changes_nothing(
    env: Env,
) -> None:
    """The other side of the same second: the user's edit came first and our push then
    overwrote it at Stripe (Stripe has no conditional write: connectors/stripe/README.md).
    Its late Event must not win either, or Postgres would hold what Stripe no longer does."""
    await env.publish(1, CUSTOMER, env.second + timedelta(milliseconds=100))
    [customer] = env.stripe.sim.live("customer")
    await env.webhook(_latest_event(env))
    env.stripe.sim.update("customer", customer["id"], {"phone": "+61 2 5550 9"})
    user_edit = _latest_event(env)
    await env.publish(
        2, {**CUSTOMER, "phone": "+61 2 5550 2"}, env.second + timedelta(milliseconds=500)
    )
    assert env.stripe.sim.get("customer", customer["id"])["phone"] == "+61 2 5550 2"
    late = await env.webhook(user_edit)
    assert late.change_id is None
    data = await env.pool.fetchval("SELECT data FROM customers WHERE id = $1", late.entity_id)
    assert data["phone"] == "+61 2 5550 2"
