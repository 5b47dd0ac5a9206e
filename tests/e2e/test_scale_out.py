"""Issue 18: a connection's provider budget is shared by every outbound worker. The same
changes are pushed by one outbound process, then by two, to a simulated Ascora that
allows what the connection's budget allows (and a fifth more): two workers meet no more
429s than one. Real processes (ingest, processor, outbound) on the local stack, in a
database and topic prefix of this test's own (the benchmark harness's, bench/stack.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bench.harness import add_connection
from bench.stack import Stack, new_database_name, scratch_database, scratch_topics
from connectors.spec import RateLimit
from crmsync.common.crypto import KeyRing, generate_master_key
from crmsync.common.db import create_pool
from crmsync.common.settings import CommonSettings
from crmsync.demo import sims
from tests.e2e.sync_harness import post_changes

CHANGES = 40
# The connection's budget: 5 calls a second (bursts of 5). The simulator allows a fifth
# more, so a call a few milliseconds early by its clock is not refused; two budgets of
# their own (each worker's, as before issue 18) are well over it.
BUDGET = {"rate": 5, "per_seconds": 1, "burst": 5}
SIM_LIMIT = RateLimit(rate=6, per_seconds=1, burst=6)


@contextlib.asynccontextmanager
async def pipeline(workdir: Path, outbounds: int) -> AsyncIterator[tuple[Stack, str]]:
    common = CommonSettings()
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    prefix = f"scale{uuid.uuid4().hex[:8]}."
    async with (
        scratch_database(common, new_database_name()) as database_url,
        scratch_topics(common.kafka_bootstrap_servers, prefix),
    ):
        stack = Stack(common, database_url, prefix, generate_master_key("scale"), workdir)
        try:
            ingest, ingest_url = stack.ingest()
            procs = [ingest, stack.processor(), *(stack.outbound() for _ in range(outbounds))]
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(p.wait_ready(session) for p in procs))
            yield stack, ingest_url
        finally:
            await stack.stop_all()


async def push_through(workdir: Path, outbounds: int) -> tuple[int, list[str]]:
    """The 429s the simulator answered, and the customers it holds, once every change
    was pushed by ``outbounds`` workers."""
    crm = await sims.start_simulator("ascora", rate_limit=SIM_LIMIT)
    crm.sim.webhook_url = None
    try:
        async with pipeline(workdir, outbounds) as (stack, ingest_url):
            keyring = KeyRing.parse(stack.master_keys)
            pool = await create_pool(stack.database_url, max_size=2)
            try:
                await sims.connect(
                    pool,
                    keyring,
                    crm,
                    tenant="scale",
                    name="ascora",
                    ingest_url=ingest_url,
                    settings={"rate_limit": BUDGET},
                )
            finally:
                await pool.close()
            crm.sim.webhook_url = None  # the pushes are what is counted there
            internal = await add_connection(
                stack, keyring, tenant="scale", provider="internal", name="erp"
            )
            body = [
                {
                    "event_id": f"scale-{n}",
                    "entity_type": "customer",
                    "op": "upsert",
                    "external_id": f"c-{n}",
                    "occurred_at": "2026-12-06T00:00:00Z",
                    "data": {"name": f"Scale {n}", "email": f"scale.{n}@example.com"},
                }
                for n in range(CHANGES)
            ]
            assert internal.api_key is not None
            await post_changes(ingest_url, internal.api_key, body)
            deadline = time.monotonic() + 120.0
            while len(crm.sim.live("customer")) < CHANGES:
                assert time.monotonic() < deadline, len(crm.sim.live("customer"))
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # a late duplicate would show within it
    finally:
        await crm.stop()
    statuses = [r.get("status") for r in crm.sim.log.requests]
    return statuses.count(429), sorted(c["emailAddress"] for c in crm.sim.live("customer"))


@pytest.mark.stack
async def test_two_outbound_workers_meet_no_more_429s_than_one(tmp_path: Path) -> None:
    one, pushed_by_one = await push_through(tmp_path / "one", 1)
    two, pushed_by_two = await push_through(tmp_path / "two", 2)
    print(f"429s: one outbound {one}, two outbounds {two}")
    expected = sorted(f"scale.{n}@example.com" for n in range(CHANGES))
    assert pushed_by_one == expected
    assert pushed_by_two == expected, "every change pushed once by the two workers"
    assert two <= one, f"two workers met {two} 429s, one worker {one}"
