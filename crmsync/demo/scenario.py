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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from connectors.registry import connector
from connectors.runtime import Clients, ConnectionInfo
from connectors.spec import EntityType
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.common.canonical import TABLES
from crmsync.common.connections import create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.kafka import consumer_lag, make_admin, make_consumer
from crmsync.common.links import external_ids
from crmsync.demo.sims import RunningSim, connect, start_simulator

Say = Callable[[str], None]
DEFAULT_PROVIDERS = ("ascora", "xero", "stripe")
# Fields every system in the demo holds for a customer: what convergence compares.
COMPARED = ("name", "email", "phone")


class LagProbe:
    """How many records the processor's consumer group has not committed yet, over the
    topics it reads: settled means zero (faust commits every few seconds)."""

    def __init__(self, bootstrap_servers: str, group: str, topics: list[str]) -> None:
        self.group = group
        self.topics = topics
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
    providers: tuple[str, ...] = DEFAULT_PROVIDERS,
    tenant: str | None = None,
    lag: LagProbe | None = None,
) -> World:
    """A fresh tenant with one simulated CRM per provider and an internal service;
    ``lag`` (started) lets ``settle`` wait for the processor to catch up."""
    world = World(
        pool, keyring, session, ingest_url.rstrip("/"), tenant or f"demo-{uuid.uuid4().hex[:8]}"
    )
    world.lag = lag
    for provider in providers:
        running = await start_simulator(provider)
        world.sims[provider] = running
        await connect(
            pool, keyring, running, tenant=world.tenant, name=provider, ingest_url=ingest_url
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


async def story(world: World, say: Say) -> None:
    """Creates on every side, edits both ways, a conflicting pair of edits."""
    providers = list(world.sims)
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
            str(len(running.sim.live(t))) if t in running.sim.entity_types else "-" for t in TABLES
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
    differences = await _differences(world)
    converged = not differences and dead == 0
    figures.update(pushes=pushes, echoes=echoes, conflicts=conflicts, canonical=canonical)
    if converged:
        lines.append(
            f"converged: every system holds the same {len(COMPARED)} customer fields as Postgres"
        )
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
    return Report(lines, converged, figures)


async def _differences(world: World) -> list[str]:
    rows = await world.pool.fetch(
        "SELECT id, data FROM customers WHERE tenant_id = $1 AND deleted_at IS NULL",
        world.tenant_id,
    )
    canonical = {r["id"]: {k: r["data"].get(k) for k in COMPARED} for r in rows}
    out: list[str] = []
    for provider, running in world.sims.items():
        info = await world.info(provider)
        mapper = connector(provider).mapper
        assert mapper is not None  # noqa: S101 - every demo provider maps
        links = await external_ids(world.pool, info.id, "customer")
        seen: set[uuid.UUID] = set()
        for obj in running.sim.live("customer"):
            record = mapper.to_canonical("customer", obj, info.settings)
            entity_id = links.get(record.external_id)
            if entity_id is None:
                out.append(f"{provider}: {record.external_id} is not linked to a canonical record")
                continue
            seen.add(entity_id)
            theirs = {k: record.data.get(k) for k in COMPARED}
            ours = canonical.get(entity_id)
            if ours is not None and theirs != ours:
                out.append(f"{provider}: {record.external_id} has {theirs}, Postgres {ours}")
        missing = set(canonical) - seen
        if missing:
            out.append(f"{provider}: {len(missing)} customer(s) missing")
    return out
