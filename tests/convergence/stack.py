"""The systems of one convergence run: the real services as processes on a database and
topic prefix of the run alone (bench.stack's scratch resources on the local stack), the
simulated CRMs in this process (the runner edits their stores as their users would), an
internal connection with its API key, all of one tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.stack import Stack, new_database_name, scratch_database, scratch_topics
from connectors.simkit import SimLog
from connectors.spec import RecordMapper
from crmsync.common.connections import create_connection
from crmsync.common.crypto import KeyRing, generate_master_key
from crmsync.common.db import create_pool
from crmsync.common.settings import CommonSettings
from crmsync.demo import sims
from crmsync.demo.sims import RunningSim
from tests.convergence.plan import INTERNAL, SYSTEM_KINDS, Kind

Say = Callable[[str], None]
# Pushes and hydrations unthrottled on our side: the run tests convergence, not a
# provider's published limit (Xero's 55 calls a minute would make a full run take hours).
UNLIMITED = {"rate": 100_000, "per_seconds": 1, "burst": 10_000}
# How often outbound looks for due sync jobs: the final reconciliation starts promptly.
SCHEDULE_CHECK_SECONDS = 0.5
# How often a provider without webhooks (MYOB) is polled during a run.
POLL_SECONDS = 1
POLL_OVERLAP_SECONDS = 5
# How long a FreshBooks callback handshake may take here (ingest takes it and its code is
# confirmed back within a second or two locally); longer is a broken handshake.
HANDSHAKE_SECONDS = 30


@dataclass
class System:
    """One simulated CRM and its connection."""

    name: str
    running: RunningSim
    connection_id: uuid.UUID
    settings: dict[str, Any]
    mapper: RecordMapper
    kinds: tuple[Kind, ...]


@dataclass
class Systems:
    tenant_id: uuid.UUID
    pool: asyncpg.Pool
    session: aiohttp.ClientSession
    ingest_url: str
    api_key: str
    internal_id: uuid.UUID
    crms: dict[str, System] = field(default_factory=dict)

    def connection_of(self, system: str) -> uuid.UUID:
        return self.internal_id if system == INTERNAL else self.crms[system].connection_id


async def _connect_crm(
    pool: asyncpg.Pool, keyring: KeyRing, provider: str, *, tenant: str, ingest_url: str,
    kinds: Sequence[Kind],
) -> System:  # fmt: skip
    running = await sims.start_simulator(provider)
    # Keep every request and webhook: pushes are counted from the log.
    running.sim.log = SimLog(requests=deque(), webhooks=deque())
    wanted = [k for k in SYSTEM_KINDS[provider] if k in kinds]
    settings: dict[str, Any] = {"rate_limit": UNLIMITED, "entity_types": wanted}
    profile = sims.PROFILES[provider]
    # A catalogue provider (FreshBooks, Mailchimp, ...) is a generic connection: its
    # connector is made from the mapping file in its profile's settings.
    made = sims.connector_of(profile.connection_provider, {**profile.settings, **settings})
    if not made.webhooks:
        # A provider without webhooks is polled: every second here, not its minute, so a
        # change made there arrives in the run's time, as a webhook's would.
        settings["reconcile_interval_seconds"] = POLL_SECONDS
    connection_id = await sims.connect(
        pool, keyring, running, tenant=tenant, name=provider, ingest_url=ingest_url,
        settings=settings,
    )  # fmt: skip
    if sims.awaits_handshake(running):
        # FreshBooks signs its webhooks with the code of its callback handshake: none is
        # verified (so no change made there arrives) until outbound confirms it.
        await _handshaken(running)
    stored = await pool.fetchval("SELECT settings FROM connections WHERE id = $1", connection_id)
    mapper = made.mapper
    assert mapper is not None  # every simulated provider has a mapping
    return System(
        provider,
        running,
        connection_id,
        stored if isinstance(stored, dict) else {},
        mapper,
        tuple(wanted),
    )


async def _handshaken(running: RunningSim) -> None:
    deadline = asyncio.get_running_loop().time() + HANDSHAKE_SECONDS
    while sims.awaits_handshake(running):
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"{running.provider}'s callback handshake did not complete")
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def running_systems(
    workdir: Path,
    providers: Sequence[str],
    kinds: Sequence[Kind],
    say: Say,
    common: CommonSettings | None = None,
    *,
    keep_database: bool = False,
) -> AsyncIterator[Systems]:
    """The services, the simulators and their connections; all gone afterwards, the
    database and topics dropped (the service logs stay in ``workdir``; the database too
    with ``keep_database``, to read a mismatch's sync log). ``common``: where the local
    stack is (default: the CRMSYNC_* environment)."""
    common = common or CommonSettings()
    prefix = f"conv{uuid.uuid4().hex[:8]}."
    database = new_database_name()
    master_keys = generate_master_key(f"conv{uuid.uuid4().hex[:6]}")
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    say(
        f"database {database}{' (kept)' if keep_database else ''}, topic prefix {prefix},"
        f" logs in {workdir}"
    )
    async with (
        scratch_database(common, database, keep=keep_database) as database_url,
        scratch_topics(common.kafka_bootstrap_servers, prefix),
        aiohttp.ClientSession() as session,
    ):
        stack = Stack(common, database_url, prefix, master_keys, workdir)
        crms: list[System] = []
        pool = await create_pool(database_url, max_size=4)
        try:
            ingest, ingest_url = stack.ingest()
            processor = stack.processor()
            outbound = stack.outbound(
                outbound_sync_concurrency=2,
                outbound_schedule_check_seconds=SCHEDULE_CHECK_SECONDS,
                # The schedule's polls in a run are MYOB's, every POLL_SECONDS: each starts
                # this much before the last (the service's 300 s would re-list five minutes
                # of changes every second); the nudges name their own window.
                outbound_reconcile_overlap_seconds=POLL_OVERLAP_SECONDS,
            )
            for service in (ingest, processor, outbound):
                await service.wait_ready(session)
            say("services ready")
            keyring = KeyRing.parse(master_keys)
            tenant = f"converge-{uuid.uuid4().hex[:6]}"
            for provider in providers:
                crms.append(
                    await _connect_crm(
                        pool, keyring, provider, tenant=tenant, ingest_url=ingest_url, kinds=kinds
                    )
                )
            async with pool.acquire() as conn:
                created = await create_connection(
                    conn, keyring, tenant=tenant, provider="internal", name=INTERNAL,
                    webhook_secret=None,
                )  # fmt: skip
            assert created.api_key is not None  # an internal connection has one
            yield Systems(
                created.tenant_id,
                pool,
                session,
                ingest_url,
                created.api_key,
                created.id,
                {c.name: c for c in crms},
            )
        finally:
            for crm in crms:
                await crm.running.stop()
            await stack.stop_all()
            await pool.close()


def default_workdir() -> Path:
    return Path(os.environ.get("CRMSYNC_STATE_DIR", ".crmsync")) / "converge"
