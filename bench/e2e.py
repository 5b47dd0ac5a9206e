"""End to end: a simulated Ascora CRM's webhooks (played by the load generator, a new
customer each) → ingest → Kafka → processor → Postgres → outbox → outbound → a second
simulated Ascora CRM, at fixed offered loads.

Latencies come from sync_log, per event: the processor's 'in' row carries
received → committed (``received_at`` is when ingest accepted the webhook), the
outbound's 'out' row for the same record carries committed → pushed; their sum is
accepted → pushed. All four processes are real: ingest, processor, outbound, simulators.

After the pipeline, each rate runs again through the floor (``bench/floor.py``: the same
hops with nothing of ours), whose latencies and CPU per event are the baselines.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import asyncpg

from bench.floor import Floor, FloorRun, floor_rate, start_floor
from bench.harness import (
    Run,
    add_connection,
    cpu_by_name,
    generate_load,
    measured,
    per_event,
    percentile,
    target,
    wait_for_count,
)
from bench.hops import hop_results
from bench.host import stack_per_event
from bench.report import Result, Target
from bench.sims import API_TOKEN, COMPANY_CODE
from bench.stack import BenchError, Service, Stack

# Issue 18's targets, by offered rate: at 200/s, webhook → Postgres p50 < 50 ms and
# p99 < 250 ms, → the other CRM p99 < 500 ms; at 1,000/s, → the other CRM p99 < 1 s (or
# the highest rate that holds it: `bench/run --only e2e --rates 200,400,600`).
POSTGRES_P50_MS = {200: 50.0}
POSTGRES_P99_MS = {200: 250.0}
CRM_P99_MS = {200: 500.0, 1000: 1000.0}
# "The highest rate that holds it": → CRM p99 under a second.
CRM_P99_HOLDS_MS = 1000.0
# No client-side throttling of pushes to the simulator: we measure the pipeline, not a
# provider's published limit (Ascora publishes none; the connector defaults to 10/s).
UNLIMITED = {"rate": 100_000, "per_seconds": 1, "burst": 10_000}

# The processes an event costs CPU in, each against its floor role (bench/floor.py).
PIPELINE = ("ingest", "processor", "outbound", "postgres", "kafka")
CPU_NOTES = {
    "postgres": "the local stack's PostgreSQL (bench/host.py)",
    "kafka": "the local stack's Kafka broker (bench/host.py)",
    "simulators": "the two simulated CRMs (source and target); baseline: the same during the "
    "floor's run",
}
FLOOR_NOTE = (
    "baseline: the floor (bench/bare_pipeline.py), the same hops with nothing of ours, at "
    "the same rate right after"
)

IN_LATENCIES = """
    SELECT latency_ms FROM sync_log
     WHERE tenant_id = $1 AND direction = 'in' AND outcome = 'applied'
"""
CRM_LATENCIES = """
    SELECT i.latency_ms + o.latency_ms FROM sync_log i
      JOIN sync_log o ON o.entity_id = i.entity_id AND o.direction = 'out'
                     AND o.outcome = 'pushed' AND o.tenant_id = i.tenant_id
     WHERE i.tenant_id = $1 AND i.direction = 'in' AND i.outcome = 'applied'
"""
PUSHED = """
    SELECT count(*) FROM sync_log WHERE tenant_id = $1 AND direction = 'out'
       AND outcome = 'pushed'
"""
APPLIED = """
    SELECT count(*) FROM sync_log WHERE tenant_id = $1 AND direction = 'in'
       AND outcome = 'applied'
"""


async def start_sims(stack: Stack, count: int, seed: int = 0) -> tuple[Service, list[str]]:
    """``count`` simulated Ascora instances in one process; their base URLs."""
    ports_file = stack.workdir / f"sims-{len(stack.services)}.json"
    sims = stack.spawn(
        "simulators",
        [sys.executable, "-m", "bench.sims", str(ports_file), str(count), str(seed)],
    )
    # Seeding 100,000 customers takes a while on a busy machine.
    deadline = time.monotonic() + 600.0
    while (ports := _ports(ports_file)) is None:
        if not sims.running() or time.monotonic() > deadline:
            raise BenchError(f"simulators did not start:\n{sims.log_tail()}")
        await asyncio.sleep(0.1)
    return sims, [f"http://127.0.0.1:{p}" for p in ports]


def _ports(path: Path) -> list[int] | None:
    """The simulators' ports, once they wrote them (atomically, by rename)."""
    try:
        ports: list[int] = json.loads(path.read_text())["ports"]
    except FileNotFoundError:
        return None
    return ports


def _under(limits: dict[int, float], rate: int) -> tuple[Target, ...]:
    return (Target("<", limits[rate]),) if rate in limits else ()


async def run_e2e(run: Run) -> list[Result]:
    results: list[Result] = []
    async with run.stack("e2e") as stack:
        sims, (source_url, target_url) = await start_sims(stack, 2)
        # ``--workers``: N processors in one consumer group, N outbounds in theirs (and
        # sharing the push queue's leases).
        processors = [stack.processor(n + 1) for n in range(run.workers)]
        outbounds = [stack.outbound() for _ in range(run.workers)]
        ingest, ingest_url = stack.ingest()
        await run.ready(*processors, *outbounds, ingest)
        floor = await start_floor(run, stack, target_url)
        pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
        try:
            for rate in run.sizes.e2e_rates:
                results += await _one_rate(
                    run,
                    stack=stack,
                    pool=pool,
                    rate=rate,
                    urls=(ingest_url, source_url, target_url),
                    services=[ingest, *processors, *outbounds, sims],
                    floor=floor,
                )
        finally:
            await pool.close()
    return [*results, *_highest_holding(results, run.sizes.e2e_rates)]


def _highest_holding(results: list[Result], rates: tuple[int, ...]) -> list[Result]:
    """Issue 18 at 1,000/s: "p99 < 1 s, or the highest rate that holds it". Of the rates
    this run offered, the highest whose → CRM p99 held under a second, ours and the
    floor's (0: none did); ``--rates`` chooses the rates tried."""
    p99 = {r.name: r for r in results if r.name.endswith(".crm.p99")}
    ours: list[int] = []
    floor: list[int] = []
    for rate in rates:
        found = p99.get(f"e2e.rate_{rate}.crm.p99")
        if found is None:
            continue
        if found.value < CRM_P99_HOLDS_MS:
            ours.append(rate)
        if found.baseline is not None and found.baseline < CRM_P99_HOLDS_MS:
            floor.append(rate)
    tried = ", ".join(
        f"{rate}/s {p99[f'e2e.rate_{rate}.crm.p99'].value:,.0f} ms"
        for rate in rates
        if f"e2e.rate_{rate}.crm.p99" in p99
    )
    return [
        Result(
            "e2e.highest_rate_holding_crm_p99_1s",
            max(ours, default=0),
            "webhooks/s",
            baseline=max(floor, default=0) or None,
            note=f"of the rates tried (→ CRM p99: {tried}); baseline: the floor's",
        )
    ]


async def _one_rate(
    run: Run,
    *,
    stack: Stack,
    pool: asyncpg.Pool,
    rate: int,
    urls: tuple[str, str, str],
    services: list[Service],
    floor: Floor,
) -> list[Result]:
    ingest_url, source_url, target_url = urls
    run.say(f"end to end: {rate} webhooks/s offered for {run.sizes.e2e_seconds:g} s")
    tenant = f"bench-e2e-{rate}"
    settings = {"company_code": COMPANY_CODE, "rate_limit": UNLIMITED}
    keyring = run.keyring
    source = await add_connection(
        stack,
        keyring,
        tenant=tenant,
        provider="ascora",
        name="source",
        base_url=source_url,
        token=API_TOKEN,
        settings=settings,
    )
    await add_connection(
        stack,
        keyring,
        tenant=tenant,
        provider="ascora",
        name="target",
        base_url=target_url,
        token=API_TOKEN,
        settings=settings,
    )
    spec = {
        "targets": [
            target(ingest_url, f"/webhooks/ascora/{source.id}", "ascora", source.webhook_secret)
        ],
        "mode": "rate",
        "rate": rate,
        # Every event counts: the latencies are read back from sync_log, not the generator.
        "warmup": 0,
        "duration": run.sizes.e2e_seconds,
    }
    start = run.host.snapshot() if run.host else None
    spent_before = cpu_by_name(services)
    summary, cpu = await measured(services, generate_load(run, spec))
    loaded = time.monotonic()
    accepted = int(summary["ok"])
    pushed, done_at = await wait_for_count(pool, PUSHED, accepted, source.tenant_id)
    # A webhook answered 503 after the bound may have been stored after all (a provider's
    # retry would be deduplicated); it is applied and pushed too: wait for those as well.
    applied = int(await pool.fetchval(APPLIED, source.tenant_id))
    if applied > pushed:
        pushed, done_at = await wait_for_count(pool, PUSHED, applied, source.tenant_id)
    # CPU per event counts the drain too: what the load cost, however long it took.
    spent = per_event(cpu_by_name(services), spent_before, accepted)
    spent |= stack_per_event(run.host, start, accepted)
    in_ms = [float(r[0]) for r in await pool.fetch(IN_LATENCIES, source.tenant_id)]
    crm_ms = [float(r[0]) for r in await pool.fetch(CRM_LATENCIES, source.tenant_id)]
    if not in_ms or not crm_ms:
        raise BenchError(
            f"{accepted} webhooks accepted, {len(in_ms)} applied, {len(crm_ms)} pushed: "
            "is the pipeline up? see the service logs"
        )
    name = f"e2e.rate_{rate}"
    hops = await hop_results(
        name, stack.common.kafka_bootstrap_servers, stack.prefix, pool, source.tenant_id
    )
    cpu_note = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
    if run.workers > 1:
        cpu_note += f" ({run.workers} workers of processor and of outbound, together)"
    run.say(f"end to end: {rate} webhooks/s through the floor (bench/bare_pipeline.py)")
    sims = [s for s in services if s.name == "simulators"]
    bare = await floor_rate(run, floor, rate, spec, also=sims)
    return [
        Result(
            f"{name}.accepted",
            summary["throughput"],
            "webhooks/s",
            note=f"{accepted} accepted, {summary['sent'] - accepted} refused or failed; "
            f"ingest answer p99 {summary['latency_ms'].get('p99', 0):.1f} ms",
        ),
        Result(
            f"{name}.postgres.p50",
            percentile(in_ms, 0.5),
            "ms",
            baseline=percentile(bare.postgres_ms, 0.5),
            targets=_under(POSTGRES_P50_MS, rate),
            note=FLOOR_NOTE,
        ),
        Result(
            f"{name}.postgres.p99",
            percentile(in_ms, 0.99),
            "ms",
            baseline=percentile(bare.postgres_ms, 0.99),
            targets=_under(POSTGRES_P99_MS, rate),
            note=f"{len(in_ms)} events applied",
        ),
        Result(
            f"{name}.crm.p50", percentile(crm_ms, 0.5), "ms", baseline=percentile(bare.crm_ms, 0.5)
        ),
        Result(
            f"{name}.crm.p99",
            percentile(crm_ms, 0.99),
            "ms",
            baseline=percentile(bare.crm_ms, 0.99),
            targets=_under(CRM_P99_MS, rate),
            note=f"{len(crm_ms)} events pushed",
        ),
        Result(
            f"{name}.drain",
            done_at - loaded,
            "s",
            note=f"after the last webhook until {pushed}/{accepted} were pushed; "
            f"CPU s during the load: {cpu_note}",
        ),
        *hops,
        *_cpu_results(name, spent, bare),
    ]


def _cpu_results(name: str, spent: dict[str, float], bare: FloorRun) -> list[Result]:
    """CPU ms per event of each process against its floor role, then the pipeline's sum
    (services and stack, not the simulators: the other CRMs) against the floor's."""
    results = [
        Result(
            f"{name}.cpu.{kind}",
            spent.get(kind, 0.0),
            "ms CPU/event",
            baseline=bare.cpu_ms.get(kind) or None,
            note=CPU_NOTES.get(kind, ""),
        )
        for kind in (*PIPELINE, "simulators")
    ]
    ours = sum(spent.get(k, 0.0) for k in PIPELINE)
    floor = sum(bare.cpu_ms.get(k, 0.0) for k in PIPELINE)
    results.append(
        Result(
            f"{name}.cpu.pipeline",
            ours,
            "ms CPU/event",
            baseline=floor,
            note="ingest + processor + outbound + PostgreSQL + Kafka, from the load's start to "
            "the last push; baseline: the same sum for the floor",
        )
    )
    return results
