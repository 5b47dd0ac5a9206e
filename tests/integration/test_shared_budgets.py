"""A connection's rate limit and circuit breaker are every process's (issue 18): two
``Clients``, each on its own pool as two workers would be, against one simulated Ascora
and the test's own PostgreSQL (``provider_budgets``)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest

from connectors.calls import CallFailedError, attempt
from connectors.limits import BreakerPolicy, CircuitState
from connectors.runtime import Clients, ConnectionInfo, credentials_json
from connectors.simkit import Fault
from connectors.spec import RateLimit
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from tests.e2e.sync_harness import SimulatedCrm, start_simulator
from tests.integration.connections import lone_connection

# Ours: 5 calls a second, bursts of 5. The simulator allows a fifth more, so a call that
# arrives a few milliseconds early by the simulator's clock is not refused; two budgets
# of 5 each are still well over it.
LIMIT = {"rate": 5, "per_seconds": 1, "burst": 5}
SIM_LIMIT = RateLimit(rate=6, per_seconds=1, burst=6)


@dataclass
class Workers:
    crm: SimulatedCrm
    info: ConnectionInfo
    clients: list[Clients]

    async def call(self, n: int, *, max_wait: float = 10.0) -> str:
        """One API call by worker ``n``: a fetch of a customer nobody has (the simulator
        answers 404, which the breaker counts as the provider being up). Its outcome."""
        handle = await self.clients[n].get(self.info)
        try:
            await attempt(
                handle, lambda c: c.fetch("customer", "missing"), max_wait_seconds=max_wait
            )
        except CallFailedError as exc:
            return exc.reason
        return "ok"

    def statuses(self) -> list[int | None]:
        return [r.get("status") for r in self.crm.sim.log.requests]


@pytest.fixture
async def workers(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[Workers]:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    crm = await start_simulator("ascora", company_code="ACME", rate_limit=SIM_LIMIT)
    created = await lone_connection(
        pool,
        keyring,
        provider="ascora",
        name="ascora",
        webhook_secret=None,
        base_url=crm.base_url,
        api_credentials=credentials_json(token=crm.sim.api_token),
        settings={"company_code": "ACME", "rate_limit": LIMIT},
    )
    info = await load_connection(pool, created.id, tenant_id=None)
    assert info is not None
    pools = [await create_pool(database_url, max_size=4) for _ in range(2)]
    sessions = [aiohttp.ClientSession() for _ in range(2)]
    policy = BreakerPolicy(min_calls=3, open_seconds=0.5)
    clients = [
        stored_clients(p, keyring, s, breaker_policy=policy)
        for p, s in zip(pools, sessions, strict=True)
    ]
    try:
        yield Workers(crm, info, clients)
    finally:
        for s in sessions:
            await s.close()
        for p in pools:
            await p.close()
        await crm.runner.cleanup()


async def test_two_workers_spend_one_budget_and_the_provider_refuses_none(
    workers: Workers,
) -> None:
    started = time.monotonic()
    outcomes = await asyncio.gather(*(workers.call(n % 2) for n in range(20)))
    elapsed = time.monotonic() - started
    assert workers.statuses().count(429) == 0, workers.statuses()
    assert set(outcomes) == {"not_found"}
    # 5 at once, then 5 a second, whichever worker calls: 15 more take 3 s. Two budgets
    # of their own would have taken half of that (and met the simulator's 429s).
    assert elapsed >= 2.9, elapsed


async def test_a_429_seen_by_one_worker_pauses_the_other(workers: Workers) -> None:
    workers.crm.sim.faults.append(Fault(429, 1, retry_after=3))
    assert await workers.call(0) == "rate_limited"
    # Worker 1 would wait ~3 s for the pause to end; it accepts 0.5 s, so it is told to
    # come back later instead of calling the provider.
    assert await workers.call(1, max_wait=0.5) == "rate_limited"
    assert len(workers.crm.sim.log.requests) == 1


async def test_failures_seen_by_two_workers_open_one_breaker_for_both(workers: Workers) -> None:
    workers.crm.sim.faults.append(Fault(503, 3))
    # Two failures in one worker and one in the other: neither saw min_calls (3) alone.
    assert [await workers.call(0), await workers.call(0)] == ["provider_5xx"] * 2
    assert await workers.call(1) == "provider_5xx"
    before = len(workers.crm.sim.log.requests)
    assert await workers.call(0) == "circuit_open"
    assert await workers.call(1) == "circuit_open"
    assert len(workers.crm.sim.log.requests) == before, "an open breaker let a call through"
    handles = [await c.get(workers.info) for c in workers.clients]
    assert [h.circuit_state for h in handles] == [CircuitState.OPEN] * 2

    await asyncio.sleep(0.6)  # open_seconds: half-open, one probe for everyone
    outcomes = await asyncio.gather(workers.call(0), workers.call(1))
    assert sorted(outcomes) == ["circuit_open", "not_found"], outcomes
    assert len(workers.crm.sim.log.requests) == before + 1
    # The probe's success closed it for both.
    assert await workers.call(0) == "not_found"
    assert await workers.call(1) == "not_found"
