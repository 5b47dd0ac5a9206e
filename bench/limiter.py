"""The shared provider budget's cost (issue 18): what one admission to call a provider
costs when the connection's token bucket and breaker live in PostgreSQL
(``provider_budgets``, one function call a round trip), against the in-memory bucket each
process kept before.

Sequential: one caller, one admission after another (the latency a push pays). Contended:
two pools (two workers) of 16 callers each admitting on the same connection's row at
once, the worst case: every admission of every worker locks that one row.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from bench.harness import Run, add_connection, percentile
from bench.report import Result
from connectors.limits import (
    MAX_BATCH,
    PROBE_LEASE_SECONDS,
    AsyncTokenBucket,
    BreakerPolicy,
    SharedBudget,
)
from connectors.spec import RateLimit
from crmsync.application.budgets import PostgresBudgets

# A budget that never makes anyone wait: the bookkeeping alone is measured.
UNLIMITED = RateLimit(rate=1_000_000, per_seconds=1, burst=1_000_000)
POLICY = BreakerPolicy()
WORKERS = 2
CALLERS = 16


async def run_limiter(run: Run) -> list[Result]:
    sequential = 2000 if run.sizes.processor_events >= 100_000 else 100
    contended = 4000 if run.sizes.processor_events >= 100_000 else 200
    async with run.stack("limiter") as stack:
        created = await add_connection(
            stack,
            run.keyring,
            tenant="bench-limiter",
            provider="ascora",
            name="ascora",
            base_url="http://127.0.0.1:9",
            token="unused",  # noqa: S106 - never sent
        )
        key = str(created.id)
        pools = [
            await asyncpg.create_pool(stack.database_url, min_size=CALLERS, max_size=CALLERS)
            for _ in range(WORKERS)
        ]
        try:
            stores = [PostgresBudgets(p, probe_seconds=PROBE_LEASE_SECONDS) for p in pools]

            async def admit(store: PostgresBudgets) -> float:
                started = time.perf_counter()
                await store.admit(key, UNLIMITED, POLICY, max_wait=2.0, successes=1)
                return time.perf_counter() - started

            await admit(stores[0])  # the row and the plan, once
            cpu = time.process_time()
            alone = [await admit(stores[0]) for _ in range(sequential)]
            cpu_per_admit = (time.process_time() - cpu) / sequential

            per_caller = contended // (WORKERS * CALLERS)

            async def caller(store: PostgresBudgets) -> list[float]:
                return [await admit(store) for _ in range(per_caller)]

            # Through SharedBudget, as the services call it: a high limit takes up to
            # MAX_BATCH tokens a round trip and spends them here.
            shared = SharedBudget(stores[0], key, UNLIMITED, POLICY)
            started = time.perf_counter()
            for _ in range(sequential):
                await shared.admit(2.0)
            batched = (time.perf_counter() - started) / sequential

            started = time.perf_counter()
            together = await asyncio.gather(*(caller(s) for s in stores for _ in range(CALLERS)))
            elapsed = time.perf_counter() - started
        finally:
            for p in pools:
                await p.close()
    bucket = AsyncTokenBucket(UNLIMITED)
    started = time.perf_counter()
    for _ in range(sequential):
        await bucket.acquire()
    local = (time.perf_counter() - started) / sequential
    waits = [w for ws in together for w in ws]
    return [
        Result(
            "limiter.shared.admit.p50",
            1000 * percentile(alone, 0.5),
            "ms",
            note=f"one caller, {sequential} admissions one after another (one round trip each)",
        ),
        Result("limiter.shared.admit.p99", 1000 * percentile(alone, 0.99), "ms"),
        Result(
            "limiter.shared.admit.cpu",
            1000 * cpu_per_admit,
            "ms CPU/admission",
            note="the calling process's CPU (asyncpg encode, decode, the event loop)",
        ),
        Result(
            "limiter.shared.contended.throughput",
            len(waits) / elapsed,
            "admissions/s",
            note=f"{WORKERS} pools x {CALLERS} callers on one connection's row",
        ),
        Result("limiter.shared.contended.p99", 1000 * percentile(waits, 0.99), "ms"),
        Result(
            "limiter.shared.batched.admit",
            1e6 * batched,
            "µs",
            note=f"mean through SharedBudget at an unlimited rate: {MAX_BATCH} tokens a "
            "round trip (a limit of R/s takes R/4 at most)",
        ),
        Result(
            "limiter.local.admit",
            1e6 * local,
            "µs",
            note="the in-memory bucket each process kept before (shared by nobody)",
        ),
    ]
