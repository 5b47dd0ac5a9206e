"""The demo: simulated CRMs and an internal service of one tenant, edited on every side,
converging through the running pipeline — and a report that says whether they did.

Every edit is made the way a user of that system makes it: through the provider's API
(our own client, pointed at the simulator), so the simulator sends its real signed
webhooks to ingest; the internal service publishes through ``POST /v1/changes``.
Convergence is checked field by field: each system's records, read back through its
connector's mapping, must hold the canonical values in Postgres.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from connectors.hubspot.simulator import HubSpotSimulator
from connectors.paypal.mapping import recipients as paypal_recipients
from connectors.registry import POLLED_PROVIDERS
from connectors.runtime import Clients, ConnectionInfo
from connectors.spec import EntityType
from connectors.square.simulator import SquareSimulator
from connectors.stripe.mapping import INVOICE_REF_KEY
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.common.canonical import TABLES
from crmsync.common.connections import create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.kafka import consumer_lag, make_admin, make_consumer
from crmsync.common.links import external_ids
from crmsync.demo.compare import FIELDS, KINDS, REFERENCES, Outcome, Seen, compare_kind
from crmsync.demo.sims import (
    RunningSim,
    awaits_handshake,
    connect,
    customers_as_recipients,
    start_simulator,
    synced_kinds,
)
from schemas import topics

Say = Callable[[str], None]
# Awaited at a point of the story where the systems should agree (tests report there).
Checkpoint = Callable[[], Awaitable[None]]
DEFAULT_PROVIDERS = ("ascora", "xero", "stripe")
# How long setup waits for a provider connected through its callback handshake (FreshBooks)
# to have its code confirmed: outbound looks every 2 s (services/outbound/handshakes.py),
# and the simulator retries its post for about 40 s while ingest starts.
HANDSHAKE_SECONDS = 60.0


class LagProbe:
    """How many records the processor's consumer group has not committed yet, over the
    topics it reads: settled means zero (faust commits every few seconds)."""

    def __init__(self, bootstrap_servers: str, group: str, topic_prefix: str) -> None:
        self.group = group
        # Every pipeline topic but records.changed, which the processor writes, not reads.
        self.topics = [topic_prefix + t.name for t in topics.ALL if t is not topics.RECORDS_CHANGED]
        self.admin = make_admin(bootstrap_servers)
        self.offsets = make_consumer(bootstrap_servers, group_id=None)

    async def start(self) -> None:
        await self.admin.start()
        await self.offsets.start()

    async def close(self) -> None:
        await self.offsets.stop()
        await self.admin.close()

    async def __call__(self) -> int:
        return sum((await consumer_lag(self.admin, self.offsets, self.group, self.topics)).values())


@dataclass
class World:
    pool: asyncpg.Pool
    keyring: KeyRing
    session: aiohttp.ClientSession
    ingest_url: str
    tenant: str
    tenant_id: uuid.UUID | None = None
    sims: dict[str, RunningSim] = field(default_factory=dict)
    publish_key: str = ""
    internal_id: uuid.UUID | None = None
    clients: Clients | None = None
    lag: LagProbe | None = None
    started: float = field(default_factory=time.monotonic)

    async def info(self, provider: str) -> ConnectionInfo:
        connection_id = self.sims[provider].connection_id
        assert connection_id is not None  # noqa: S101 - connected in setup
        info = await load_connection(self.pool, connection_id, tenant_id=self.tenant_id)
        assert info is not None  # noqa: S101
        return info

    async def create(
        self,
        provider: str,
        entity_type: EntityType,
        data: dict[str, Any],
        refs: dict[str, str] | None = None,
    ) -> str:
        """Create a record in that system, as its user would; return its id there."""
        assert self.clients is not None  # noqa: S101
        handle = await self.clients.get(await self.info(provider))
        record = await handle.client.create(entity_type, data, refs or {}, f"demo-{uuid.uuid4()}")
        return record.external_id

    async def update(
        self, provider: str, entity_type: EntityType, external_id: str, data: dict[str, Any]
    ) -> None:
        assert self.clients is not None  # noqa: S101
        handle = await self.clients.get(await self.info(provider))
        await handle.client.update(entity_type, external_id, data, {})

    async def publish(self, changes: list[dict[str, Any]]) -> None:
        """What an internal service does: POST /v1/changes with its publish key."""
        async with self.session.post(
            f"{self.ingest_url}/v1/changes",
            json=changes,
            headers={"Authorization": f"Bearer {self.publish_key}"},
        ) as response:
            if response.status != 202:
                raise RuntimeError(
                    f"/v1/changes answered {response.status}: {await response.text()}"
                )

    async def external_id(self, provider: str, email: str) -> str | None:
        """The id in ``provider`` of the customer with this email (once it was pushed)."""
        found = await self.pool.fetchval(
            """
            SELECT l.external_id FROM entity_links l JOIN customers c ON c.id = l.entity_id
             WHERE l.connection_id = $1 AND l.entity_type = 'customer'
               AND c.email_normalized = $2
            """,
            self.sims[provider].connection_id,
            email.lower(),
        )
        return str(found) if found is not None else None


async def setup(
    pool: asyncpg.Pool,
    keyring: KeyRing,
    session: aiohttp.ClientSession,
    *,
    ingest_url: str,
    public_url: str | None = None,
    providers: tuple[str, ...] = DEFAULT_PROVIDERS,
    tenant: str | None = None,
    lag: LagProbe | None = None,
) -> World:
    """A fresh tenant with one simulated CRM per provider and an internal service;
    ``public_url``: ingest's public base URL, where it is not ``ingest_url`` (the URL that
    Square's and HubSpot's signatures cover); ``lag`` (started) lets ``settle`` wait for
    the processor to catch up."""
    world = World(
        pool, keyring, session, ingest_url.rstrip("/"), tenant or f"demo-{uuid.uuid4().hex[:8]}"
    )
    world.lag = lag
    for provider in providers:
        running = await start_simulator(provider)
        world.sims[provider] = running
        await connect(
            pool,
            keyring,
            running,
            tenant=world.tenant,
            name=provider,
            ingest_url=ingest_url,
            public_url=public_url,
        )
    async with pool.acquire() as conn:
        internal = await create_connection(
            conn,
            keyring,
            tenant=world.tenant,
            provider="internal",
            name="internal",
            webhook_secret=None,
        )
    assert internal.api_key is not None  # noqa: S101 - internal connections get one
    world.publish_key = internal.api_key
    world.internal_id = internal.id
    world.tenant_id = internal.tenant_id
    world.clients = stored_clients(pool, keyring, session)
    # A provider connected through its callback handshake delivers nothing until outbound
    # confirmed its code: the story starts once it did (or the wait ran out).
    for running in world.sims.values():
        if awaits_handshake(running):

            async def verified(running: RunningSim = running) -> bool:
                return not awaits_handshake(running)

            await wait_for(verified, seconds=HANDSHAKE_SECONDS)
    return world


async def stop(world: World) -> None:
    for running in world.sims.values():
        await running.stop()


# --- the story ---------------------------------------------------------------------------------


PEOPLE = (
    ("Harbour Plumbing", "office@harbourplumbing.example", "+61 2 5550 0101"),
    ("Ridge Electrical", "jobs@ridgeelectrical.example", "+61 2 5550 0102"),
    ("Northside Roofing", "hello@northsideroofing.example", "+61 2 5550 0103"),
    ("Bayview Landscapes", "team@bayviewlandscapes.example", "+61 2 5550 0104"),
    ("Cedar Carpentry", "build@cedarcarpentry.example", "+61 2 5550 0105"),
    ("Summit Air", "service@summitair.example", "+61 2 5550 0106"),
    ("Coastal Tiling", "quotes@coastaltiling.example", "+61 2 5550 0107"),
    ("Metro Locksmiths", "help@metrolocksmiths.example", "+61 2 5550 0108"),
)


async def wait_for(check: Callable[[], Any], *, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def story(world: World, say: Say, *, part_paid: Checkpoint | None = None) -> None:
    """Creates on every side, edits both ways, a conflicting pair of edits, then the invoice
    chain (``part_paid``, if given, is awaited once the part payment reached everywhere).
    Customers are made and edited in the systems that hold them on their own (PayPal's are
    its invoices' recipients, made by addressing an invoice) and that say so by webhook: a
    polled system (MYOB) reports its own edits at its poll interval, 60 s, after this story
    has settled; it is kept in step by what the others send it."""
    providers = [
        p
        for p, s in world.sims.items()
        if not customers_as_recipients(s) and p not in POLLED_PROVIDERS
    ]
    people = list(PEOPLE)
    say(f"creating customers in {', '.join(providers)} and the internal service")
    owners: dict[str, str] = {}
    for n, (name, email, phone) in enumerate(people[:6]):
        provider = providers[n % len(providers)]
        await world.create(provider, "customer", {"name": name, "email": email, "phone": phone})
        owners[email] = provider
    now = datetime.now(UTC).isoformat()
    await world.publish(
        [
            {
                "event_id": f"demo-{uuid.uuid4()}",
                "entity_type": "customer",
                "op": "upsert",
                "external_id": f"int-{n}",
                "occurred_at": now,
                "data": {"name": name, "email": email, "phone": phone},
            }
            for n, (name, email, phone) in enumerate(people[6:])
        ]
    )
    everywhere = await _await_links(world, [p[1] for p in people], say)
    if not everywhere:
        return

    say("editing: a phone in one system, a name in another")
    first, second = providers[0], providers[-1]
    email_a = people[0][1]
    await world.update(
        second, "customer", await _id(world, second, email_a), {"phone": "+61 2 5550 9001"}
    )
    email_b = people[1][1]
    await world.update(
        first, "customer", await _id(world, first, email_b), {"name": "Ridge Electrical Pty Ltd"}
    )

    say("conflict: the same customer's phone edited in two systems at once")
    email_c = people[2][1]
    if len(providers) >= 2:
        await asyncio.gather(
            world.update(
                providers[0],
                "customer",
                await _id(world, providers[0], email_c),
                {"phone": "+61 2 5550 7001"},
            ),
            world.update(
                providers[1],
                "customer",
                await _id(world, providers[1], email_c),
                {"phone": "+61 2 5550 7002"},
            ),
        )

    await invoice_chain(world, say, part_paid=part_paid)


# --- the invoice chain (issue 17) ---------------------------------------------------------------

# The field-service CRM holds jobs; it is where the work is invoiced and part paid.
CHAIN_CRM = "ascora"
# The card payment is made where cards are taken.
CARD_PROVIDER = "stripe"
CURRENCY = "AUD"
JOB = {
    "title": "Irrigation repair",
    "description": "Replace the cracked drip line along the rear garden bed.",
    "status": "completed",
    "priority": "normal",
}
# Two lines, one taxed (10% GST on labour; the materials line carries none).
LINES = (
    {"description": "Labour, 3 h", "quantity": "3", "unit_amount": 9_500, "tax_amount": 2_850},
    {"description": "Drip line and fittings", "quantity": "1", "unit_amount": 12_000},
)
TOTAL = 3 * 9_500 + 2_850 + 12_000
PART_PAYMENT = 15_000
# Stripe's test card: what a card checkout confirms a PaymentIntent with.
TEST_CARD = "pm_card_visa"


async def invoice_chain(world: World, say: Say, *, part_paid: Checkpoint | None = None) -> None:
    """A job → its invoice (two lines, one taxed) → a part payment in the field-service CRM,
    then the rest paid by card at Stripe, for the same invoice once it reached Stripe."""
    if CHAIN_CRM not in world.sims:
        say(f"no {CHAIN_CRM} simulator: the job → invoice → payments chain is left out")
        return
    customer = await _id(world, CHAIN_CRM, PEOPLE[3][1])
    say(f"{CHAIN_CRM}: a job, its invoice (two lines, one taxed) and a part payment")
    job = await world.create(CHAIN_CRM, "job", JOB, {"customer_id": customer})
    today = datetime.now(UTC).date()
    invoice = await world.create(
        CHAIN_CRM,
        "invoice",
        {
            "status": "open",
            "currency": CURRENCY,
            "issued_on": today.isoformat(),
            "due_on": (today + timedelta(days=14)).isoformat(),
            "lines": [dict(line) for line in LINES],
        },
        {"customer_id": customer, "job_id": job},
    )
    # Paid only once the invoice is in every system that holds invoices (Stripe included):
    # the card payment below is made against Stripe's copy of it.
    invoice_id = await _await_everywhere(world, "invoice", CHAIN_CRM, invoice, say)
    if invoice_id is None:
        return
    payment = await world.create(
        CHAIN_CRM,
        "payment",
        {
            "amount": PART_PAYMENT,
            "currency": CURRENCY,
            "status": "succeeded",
            "method": "BankTransfer",
            "reference": "EFT deposit",
        },
        {"invoice_id": invoice},
    )
    if await _await_everywhere(world, "payment", CHAIN_CRM, payment, say) is None:
        return
    if part_paid is not None:
        await part_paid()
    if CARD_PROVIDER not in world.sims:
        say(f"no {CARD_PROVIDER} simulator: the card payment is left out")
        return
    say(f"{CARD_PROVIDER}: the rest paid by card against the same invoice")
    await _card_payment(world, invoice_id, TOTAL - PART_PAYMENT)


async def _card_payment(world: World, invoice_id: uuid.UUID, amount: int) -> None:
    """What a Stripe card checkout does: one PaymentIntent, confirmed with a card at once,
    naming the invoice (PaymentIntents have no invoice field: crmsync's metadata key)."""
    running = world.sims[CARD_PROVIDER]
    invoice = await _link(world, CARD_PROVIDER, "invoice", invoice_id)
    customer = await world.pool.fetchval(
        "SELECT data->>'customer_id' FROM invoices WHERE id = $1 AND tenant_id = $2",
        invoice_id,
        world.tenant_id,
    )
    stripe_customer = await _link(world, CARD_PROVIDER, "customer", uuid.UUID(customer))
    async with world.session.post(
        f"{running.base_url}/v1/payment_intents",
        data={
            "amount": str(amount),
            "currency": CURRENCY.lower(),
            "customer": stripe_customer,
            "payment_method": TEST_CARD,
            "payment_method_types[0]": "card",
            "confirm": "true",
            "description": "Card payment",
            f"metadata[{INVOICE_REF_KEY}]": invoice,
        },
        headers={
            "Authorization": f"Bearer {running.sim.api_token}",
            "Idempotency-Key": f"demo-{uuid.uuid4()}",
        },
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"Stripe answered {response.status}: {await response.text()}")


async def _link(world: World, provider: str, entity_type: EntityType, entity_id: uuid.UUID) -> str:
    """The id in ``provider`` of the canonical record ``entity_id``."""
    connection_id = world.sims[provider].connection_id
    assert connection_id is not None  # noqa: S101 - connected in setup
    links = await external_ids(world.pool, connection_id, entity_type)
    found = next((x for x, linked in links.items() if linked == entity_id), None)
    if found is None:
        raise RuntimeError(f"{entity_type} {entity_id} never reached {provider}")
    return found


async def _await_everywhere(
    world: World, entity_type: EntityType, origin: str, external_id: str, say: Say
) -> uuid.UUID | None:
    """The canonical id of ``origin``'s record once every system holding that kind has it."""
    holders = [s.connection_id for s in world.sims.values() if entity_type in synced_kinds(s)]
    found: list[uuid.UUID] = []

    async def everywhere() -> bool:
        linked = [await external_ids(world.pool, c, entity_type) for c in holders if c]
        origin_id = world.sims[origin].connection_id
        assert origin_id is not None  # noqa: S101 - connected in setup
        entity_id = (await external_ids(world.pool, origin_id, entity_type)).get(external_id)
        if entity_id is None or not all(entity_id in links.values() for links in linked):
            return False
        found.append(entity_id)
        return True

    if await wait_for(everywhere, seconds=60):
        return found[0]
    say(f"the {entity_type} from {origin} did not reach every system within 60 s; see the report")
    return None


async def _id(world: World, provider: str, email: str) -> str:
    found = await world.external_id(provider, email)
    if found is None:
        raise RuntimeError(f"{email} never reached {provider}")
    return found


async def _await_links(world: World, emails: list[str], say: Say) -> bool:
    want = len(emails) * len(world.sims)

    async def linked() -> bool:
        got = await world.pool.fetchval(
            """
            SELECT count(*) FROM entity_links l JOIN customers c ON c.id = l.entity_id
             WHERE l.entity_type = 'customer' AND c.tenant_id = $1
               AND l.connection_id = ANY($2) AND c.email_normalized = ANY($3)
            """,
            world.tenant_id,
            [s.connection_id for s in world.sims.values()],
            emails,
        )
        return bool(got == want)

    if await wait_for(linked, seconds=90):
        return True
    say("not every customer reached every system within 90 s; see the report")
    return False


# --- quiet and report ----------------------------------------------------------------------------


async def settle(world: World, *, quiet_seconds: float = 2.0, seconds: float = 90.0) -> bool:
    """Wait until nothing moves for this tenant: no webhook waiting in a simulator, nothing
    the processor has not consumed, no pushes pending, no outbox rows unpublished, no new
    sync-log lines for ``quiet_seconds``."""
    deadline = time.monotonic() + seconds
    last: tuple[int, int, int] | None = None  # (pushes + webhooks pending, outbox, log)
    since = time.monotonic()
    while time.monotonic() < deadline:
        row = await world.pool.fetchrow(
            """
            SELECT (SELECT count(*) FROM push_jobs WHERE tenant_id = $1) AS pending,
                   (SELECT count(*) FROM outbox WHERE tenant_id = $1)
                       AS unpublished,
                   (SELECT count(*) FROM sync_log WHERE tenant_id = $1) AS logged
            """,
            world.tenant_id,
        )
        assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
        webhooks = sum(s.sim.webhooks_pending for s in world.sims.values())
        if world.lag is not None:
            webhooks += await world.lag()
        state = (row["pending"] + webhooks, row["unpublished"], row["logged"])
        if state != last:
            last, since = state, time.monotonic()
        elif state[0] == 0 and state[1] == 0 and time.monotonic() - since >= quiet_seconds:
            return True
        await asyncio.sleep(0.25)
    return False


@dataclass
class Report:
    lines: list[str]
    converged: bool
    figures: dict[str, Any]


async def report(world: World) -> Report:
    pool, tenant_id = world.pool, world.tenant_id
    lines: list[str] = []
    figures: dict[str, Any] = {}
    canonical: dict[str, int] = {}
    for entity_type, table in TABLES.items():
        canonical[entity_type] = int(
            await pool.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1 AND deleted_at IS NULL",  # noqa: S608
                tenant_id,
            )
        )
    lines.append("records per system (customer / job / invoice / payment):")
    lines.append(f"  {'postgres':<10} " + " / ".join(str(canonical[t]) for t in TABLES))
    for provider, running in world.sims.items():
        counts = [
            str(len(_as_read(running, t))) if t in synced_kinds(running) else "-" for t in TABLES
        ]
        lines.append(f"  {provider:<10} " + " / ".join(counts))
    outcomes: dict[str, int] = {
        r["k"]: r["n"]
        for r in await pool.fetch(
            """
            SELECT direction || ':' || outcome AS k, count(*) AS n FROM sync_log
             WHERE tenant_id = $1 GROUP BY 1
            """,
            tenant_id,
        )
    }
    figures["outcomes"] = outcomes
    pushes = outcomes.get("out:pushed", 0)
    echoes = outcomes.get("in:echo", 0)
    conflicts = outcomes.get("in:conflict", 0) + outcomes.get("in:stale", 0)
    applied = outcomes.get("in:applied", 0)
    lines.append(
        f"changes applied {applied} · pushes {pushes} · echoes suppressed {echoes} · "
        f"conflicts resolved by policy {conflicts}"
    )
    lat = await pool.fetch(
        """
        SELECT direction,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99,
               count(*) AS n
          FROM sync_log
         WHERE tenant_id = $1 AND latency_ms IS NOT NULL
           AND outcome IN ('applied', 'pushed')
         GROUP BY direction
        """,
        tenant_id,
    )
    for row in lat:
        what = "received → committed" if row["direction"] == "in" else "committed → pushed"
        figures[f"latency_{row['direction']}"] = {"p50": row["p50"], "p99": row["p99"]}
        lines.append(
            f"latency {what}: p50 {row['p50']:.0f} ms · p99 {row['p99']:.0f} ms ({row['n']} events)"
        )
    dead = int(
        await pool.fetchval("SELECT count(*) FROM dead_letters WHERE tenant_id = $1", tenant_id)
    )
    figures["dead_letters"] = dead
    outcome = await compare(world)
    differences = outcome.differences
    converged = not differences and dead == 0
    figures.update(pushes=pushes, echoes=echoes, conflicts=conflicts, canonical=canonical)
    figures["compared"] = {f"{system}:{kind}": n for (system, kind), n in outcome.compared.items()}
    figures["exceptions"] = list(outcome.exceptions)
    if converged:
        lines.append("converged: every system holds what Postgres holds, for each kind it holds:")
        lines.extend(f"  {kind:<8} {', '.join(FIELDS[kind])}" for kind in KINDS)
    else:
        lines.append(f"NOT converged ({dead} dead letters); sync-log outcomes {outcomes}:")
        lines.extend(f"  {d}" for d in differences[:10])
        for row in await pool.fetch(
            """
            SELECT stage, reason, left(detail, 200) AS detail FROM dead_letters
             WHERE tenant_id = $1 ORDER BY created_at LIMIT 5
            """,
            tenant_id,
        ):
            lines.append(f"  dead letter [{row['stage']}] {row['reason']}: {row['detail']}")
    if outcome.exceptions:
        lines.append("documented exceptions (a provider's own rules; not counted as differences):")
        lines.extend(f"  {e}" for e in outcome.exceptions)
    return Report(lines, converged, figures)


def _as_read(running: RunningSim, kind: EntityType) -> list[dict[str, Any]]:
    """A simulator's stored objects of ``kind`` as its client reads them: HubSpot keeps a
    deal's contacts beside the deal and lists them when asked (``associations=contacts``);
    PayPal's customers are its invoices' recipients; a Square invoice is read with the
    order it bills, and a payment with the invoice of its order."""
    sim = running.sim
    if customers_as_recipients(running) and kind == "customer":
        return paypal_recipients(sim.live("invoice"))
    objects = sim.live(kind)
    if isinstance(sim, HubSpotSimulator) and kind == "job":
        return [sim.view(kind, o, list(o["properties"]), associations=True) for o in objects]
    if isinstance(sim, SquareSimulator) and kind == "invoice":
        return [{"invoice": o, "order": sim.orders.get(o.get("order_id") or "")} for o in objects]
    if isinstance(sim, SquareSimulator) and kind == "payment":
        billed = {i.get("order_id"): i["id"] for i in sim.live("invoice")}
        return [
            {**o, "invoice_id": billed[o.get("order_id")]} if o.get("order_id") in billed else o
            for o in objects
        ]
    return objects


async def compare(world: World) -> Outcome:
    """Each system's records of each kind it holds, read through its connector's mapping,
    against the canonical records in Postgres (``crmsync.demo.compare``)."""
    outcome = Outcome()
    names = {str(s.connection_id): provider for provider, s in world.sims.items()}
    billed = {
        uuid.UUID(row["customer_id"])
        for row in await world.pool.fetch(
            """
            SELECT data->>'customer_id' AS customer_id FROM invoices
             WHERE tenant_id = $1 AND deleted_at IS NULL AND data->>'customer_id' IS NOT NULL
            """,
            world.tenant_id,
        )
    }
    for kind in KINDS:
        rows = await world.pool.fetch(
            f"""
            SELECT id, data, field_meta FROM {TABLES[kind]}
             WHERE tenant_id = $1 AND deleted_at IS NULL
            """,  # noqa: S608 - a table name of ours
            world.tenant_id,
        )
        canonical = {r["id"]: r["data"] for r in rows}
        sources = {
            r["id"]: {
                name: names.get(str(meta.get("source")), "other")
                for name, meta in r["field_meta"].items()
                if isinstance(meta, dict)
            }
            for r in rows
        }
        for provider, running in world.sims.items():
            held = synced_kinds(running)
            if kind not in held:
                continue
            info = await world.info(provider)
            mapper = info.connector().mapper
            assert mapper is not None  # noqa: S101 - every demo provider maps
            links = {k: await external_ids(world.pool, info.id, k) for k in held}
            seen = []
            for obj in _as_read(running, kind):
                record = mapper.to_canonical(kind, obj, info.settings)
                refs = {
                    name: links[target].get(record.refs[name]) if name in record.refs else None
                    for name, target in REFERENCES.items()
                    if target in held
                }
                seen.append(Seen(record, links[kind].get(record.external_id), refs))
            compare_kind(
                provider,
                kind,
                seen,
                canonical,
                holds=held,
                outcome=outcome,
                sources=sources,
                # A system holding customers as recipients holds those invoices address.
                expected=billed
                if kind == "customer" and customers_as_recipients(running)
                else None,
            )
    return outcome
