"""The e2e section's floor: ``bench/bare_pipeline.py`` run at the same offered rate, on
the same machine, right after the real pipeline.

Its latencies are the baselines of the e2e latencies (what this machine takes for the
same hops with nothing of ours), and its CPU per event, process by process, the
baselines of each service's (issue 18: "the CPU per event of each process against the
sum of bare baselines").
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.harness import Run, cpu_by_name, generate_load, per_event, target
from bench.host import stack_per_event
from bench.stack import BenchError, Service, Stack
from crmsync.common.kafka import TopicConfig, ensure_topics, make_admin
from crmsync.localstack.ports import free_port
from schemas import topics

# The real pipeline's services each bare role stands in for.
ROLES = ("ingest", "processor", "outbound")
# How long the floor's last pushes may take to show once the load stopped moving them:
# as long as the real pipeline's (``harness.wait_for_count``).
STALL_SECONDS = 30.0


@dataclass
class Floor:
    services: dict[str, Service]
    urls: dict[str, str]
    # Latencies each role had recorded before the rate being read: every rate's are its own.
    seen: dict[str, int] = field(default_factory=dict)


@dataclass
class FloorRun:
    """One rate through the floor: latencies (ms), and CPU ms per event of each role and
    of the stack's PostgreSQL and Kafka, from the load's start until the last push."""

    accepted: int
    postgres_ms: list[float]
    crm_ms: list[float]
    cpu_ms: dict[str, float]


async def start_floor(run: Run, stack: Stack, target_url: str) -> Floor:
    """The bare roles, their topics made with the pipeline's partition counts."""
    admin = make_admin(stack.common.kafka_bootstrap_servers)
    await admin.start()
    try:
        await ensure_topics(
            admin,
            [
                TopicConfig.of(topics.WEBHOOKS_RAW, f"{stack.prefix}bare.raw"),
                TopicConfig.of(topics.RECORDS_CHANGED, f"{stack.prefix}bare.changed"),
            ],
        )
    finally:
        await admin.close()
    services: dict[str, Service] = {}
    urls: dict[str, str] = {}
    for role in ROLES:
        port = free_port()
        argv = [sys.executable, "-m", "bench.bare_pipeline", role, str(port)]
        if role == "outbound":
            argv.append(target_url)
        urls[role] = f"http://127.0.0.1:{port}"
        services[role] = stack.spawn(f"bare-{role}", argv, f"{urls[role]}/readyz")
    await run.ready(*services.values())
    return Floor(services, urls)


async def floor_rate(
    run: Run, floor: Floor, rate: int, spec: dict[str, Any], also: Sequence[Service] = ()
) -> FloorRun:
    """Offer ``rate`` webhooks/s (``spec``: the real run's, re-targeted) to the floor;
    ``also``: other processes whose CPU counts (the simulators)."""
    services = [*floor.services.values(), *also]
    start = run.host.snapshot() if run.host else None
    before = cpu_by_name(services)
    ingest = floor.urls["ingest"]
    spec = {**spec, "targets": [target(ingest, "/bare", "ascora", spec["targets"][0]["secret"])]}
    summary = await generate_load(run, spec)
    accepted = int(summary["ok"])
    crm = await _latencies(run, floor, "outbound", accepted)
    postgres = await _latencies(run, floor, "processor", accepted)
    if len(crm) < accepted:
        raise BenchError(f"floor at {rate}/s: {accepted} accepted, {len(crm)} pushed")
    spent = {
        k.removeprefix("bare-"): v
        for k, v in per_event(cpu_by_name(services), before, accepted).items()
    }
    spent |= stack_per_event(run.host, start, accepted)
    return FloorRun(accepted, postgres, crm, spent)


async def _latencies(run: Run, floor: Floor, role: str, want: int) -> list[float]:
    """The latencies the role recorded since the previous rate was read, once there are
    ``want`` of them (or they stopped coming for STALL_SECONDS)."""
    url = f"{floor.urls[role]}/stats"
    last, moved = -1, time.monotonic()
    while True:
        async with run.session.get(url) as response:
            found: list[float] = (await response.json())["latencies_ms"]
        seen = floor.seen.get(role, 0)
        got = len(found) - seen
        if got >= want or time.monotonic() - moved > STALL_SECONDS:
            floor.seen[role] = len(found)
            return found[seen:]
        if got != last:
            last, moved = got, time.monotonic()
        await asyncio.sleep(0.1)
