"""What every benchmark section shares: sizes, the run's context, the load generator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.host import HostCpu
from bench.stack import (
    BenchError,
    Service,
    Stack,
    new_database_name,
    scratch_database,
    scratch_topics,
)
from connectors.registry import connector
from connectors.runtime import credentials_json
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.db import connect
from crmsync.common.settings import CommonSettings


@dataclass(frozen=True)
class Sizes:
    """How much each section does; ``QUICK`` only proves the harness still works."""

    warmup_seconds: float
    ingest_seconds: float
    ingest_concurrency: int
    ingest_rates: tuple[int, ...]
    e2e_seconds: float
    e2e_rates: tuple[int, ...]
    processor_events: int
    backfill_records: int
    body_bytes: int = 1024


# The sizes: offered loads 500/1,000/2,000 per second, 200 and 1,000 events/s end
# to end, 100,000 events and 100,000 records; 15 s windows keep p99 on ~15,000 samples.
FULL = Sizes(
    warmup_seconds=2.0,
    ingest_seconds=15.0,
    ingest_concurrency=32,
    ingest_rates=(500, 1000, 2000),
    e2e_seconds=20.0,
    e2e_rates=(200, 1000),
    processor_events=100_000,
    backfill_records=100_000,
)
QUICK = Sizes(
    warmup_seconds=0.3,
    ingest_seconds=1.0,
    ingest_concurrency=8,
    ingest_rates=(100,),
    e2e_seconds=1.5,
    e2e_rates=(50,),
    processor_events=500,
    backfill_records=300,
)

Say = Callable[[str], None]


@dataclass
class Run:
    common: CommonSettings
    sizes: Sizes
    master_keys: str
    workdir: Path
    session: aiohttp.ClientSession
    say: Say
    # Peak RSS (KiB) of each kind of process, across every section it ran in.
    peak_rss_kib: dict[str, int] = field(default_factory=dict)
    # Processor and outbound processes each section runs (``--workers``), each in its
    # consumer group: the section being run now.
    workers: int = 1
    # ``--set``: CRMSYNC_ settings (lower-case names, no prefix) for every service started.
    settings: dict[str, str] = field(default_factory=dict)
    # Who used the CPU (bench/host.py): a section may snapshot it around its own loads.
    host: HostCpu | None = None

    @property
    def keyring(self) -> KeyRing:
        return KeyRing.parse(self.master_keys)

    @contextlib.asynccontextmanager
    async def stack(self, section: str) -> AsyncIterator[Stack]:
        prefix = f"bench{uuid.uuid4().hex[:8]}."
        database = new_database_name()
        # Each run of a section its own directory: a second run (another --workers count)
        # must not read the first one's files (the simulators' ports).
        workdir = self.workdir / (section if self.workers == 1 else f"{section}-{self.workers}")
        workdir.mkdir(parents=True, exist_ok=True)
        # Named so a caller (the test) can check that both are gone afterwards.
        self.say(f"{section}: database {database}, topic prefix {prefix}")
        async with (
            scratch_database(self.common, database) as database_url,
            scratch_topics(self.common.kafka_bootstrap_servers, prefix),
        ):
            stack = Stack(
                self.common, database_url, prefix, self.master_keys, workdir, self.settings
            )
            try:
                yield stack
            finally:
                await stack.stop_all()
                for service in stack.services:
                    peak = max(self.peak_rss_kib.get(service.name, 0), service.peak_rss_kib)
                    self.peak_rss_kib[service.name] = peak

    async def ready(self, *services: Service) -> None:
        await asyncio.gather(*(s.wait_ready(self.session) for s in services))


async def add_connection(
    stack: Stack,
    keyring: KeyRing,
    *,
    tenant: str,
    provider: str,
    name: str,
    base_url: str | None = None,
    token: str | None = None,
    settings: dict[str, Any] | None = None,
) -> CreatedConnection:
    scheme = connector(provider).scheme if provider != "internal" else None
    conn = await connect(stack.database_url)
    try:
        return await create_connection(
            conn,
            keyring,
            tenant=tenant,
            provider=provider,
            name=name,
            webhook_secret=scheme.generate_secret() if scheme else None,
            base_url=base_url,
            api_credentials=credentials_json(token=token) if token else None,
            settings=settings,
        )
    finally:
        await conn.close()


def target(base_url: str, path: str, kind: str, secret: str | None) -> dict[str, Any]:
    host, _, port = base_url.removeprefix("http://").partition(":")
    return {"host": host, "port": int(port), "path": path, "kind": kind, "secret": secret}


async def generate_load(run: Run, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load generator (its own process) and return its summary."""
    spec = {"body_bytes": run.sizes.body_bytes, **spec}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(json.dumps(spec).encode())
    if proc.returncode != 0:
        raise BenchError(f"load generator failed ({proc.returncode}): {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


def cpu_by_name(services: Sequence[Service]) -> dict[str, float]:
    """CPU seconds each kind of service has used so far (its workers together)."""
    spent: dict[str, float] = {}
    for service in services:
        spent[service.name] = spent.get(service.name, 0.0) + service.cpu()
    return spent


def per_event(after: dict[str, float], before: dict[str, float], events: int) -> dict[str, float]:
    """CPU ms per event of each kind of service between two ``cpu_by_name``."""
    return {k: 1000 * (v - before.get(k, 0.0)) / max(events, 1) for k, v in after.items()}


async def measured(
    services: Sequence[Service], work: Awaitable[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, float]]:
    """``work``'s result and the CPU seconds each kind of service spent meanwhile (its
    workers together)."""
    before = cpu_by_name(services)
    result = await work
    return result, {k: v - before[k] for k, v in cpu_by_name(services).items()}


async def scrape(run: Run, service: Service) -> dict[str, float]:
    """A service's Prometheus metrics, summed over labels: ``{"name": value}``."""
    if service.ready_url is None:
        return {}
    url = service.ready_url.removesuffix("/readyz") + "/metrics"
    try:
        async with run.session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
            if response.status != 200:
                return {}
            text = await response.text()
    except aiohttp.ClientConnectionError:
        # A worker not serving yet (a --quick drain can end before a second one is up).
        return {}
    found: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.partition("{")[0]
        found[name] = found.get(name, 0.0) + float(value)
    return found


def mean(metrics: dict[str, float], histogram: str) -> float:
    """A histogram's mean from its _sum and _count (0 when it saw nothing)."""
    count = metrics.get(f"{histogram}_count", 0.0)
    return metrics.get(f"{histogram}_sum", 0.0) / count if count else 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (what the load generator reports too)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


async def wait_for_count(
    pool: asyncpg.Pool | asyncpg.Connection,
    sql: str,
    want: int,
    *args: Any,
    stall_seconds: float = 30.0,
    every: float = 0.1,
    on_first: Callable[[int, float], None] | None = None,
) -> tuple[int, float]:
    """Poll ``sql`` until it reaches ``want`` or stops moving for ``stall_seconds``.
    Returns the last count and the monotonic time it was read."""
    last, moved = -1, time.monotonic()
    first_seen = False
    while True:
        got = int(await pool.fetchval(sql, *args))
        now = time.monotonic()
        if got > 0 and not first_seen:
            first_seen = True
            if on_first is not None:
                on_first(got, now)
        if got >= want:
            return got, now
        if got != last:
            last, moved = got, now
        elif now - moved > stall_seconds:
            return got, now
        await asyncio.sleep(every)
