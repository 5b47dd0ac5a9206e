"""The outbound loops: records.changed → push queue (consumer), push queue → providers
(worker), and the gauges that describe both (stats).

The consumer commits a Kafka offset only after the pushes it implies are rows in
Postgres; the worker claims due rows with a lease and runs them concurrently, each
connection within its own rate limit and breaker. A slow or failing provider only delays
its own rows: failures are rescheduled in the table, never slept on in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from connectors.limits import CIRCUIT_GAUGE
from connectors.runtime import Clients
from crmsync.common.pushes import Job, claim, queue_stats
from crmsync.common.supervise import TaskHealth, supervise
from schemas.records import CanonicalRecord
from services.outbound import metrics
from services.outbound.pusher import Pusher
from services.outbound.queue import PushRow, Router, enqueue, push_rows

log = logging.getLogger(__name__)

# Longest sleep when no push is due: also how fast a lease from a crashed worker is noticed.
IDLE_POLL_SECONDS = 1.0
STATS_SECONDS = 5.0


class Outbound:
    def __init__(
        self,
        pool: asyncpg.Pool,
        consumer: AIOKafkaConsumer,
        clients: Clients,
        pusher: Pusher,
        *,
        concurrency: int,
        lease_seconds: float,
    ) -> None:
        self.pool = pool
        self.consumer = consumer
        self.clients = clients
        self.pusher = pusher
        self.router = Router(pool)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.in_flight: set[asyncio.Task[None]] = set()
        # One per supervised loop: /readyz names whichever keeps failing.
        self.health: dict[str, TaskHealth] = {}

    async def resilient(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` until stopping, restarted after any error (an outage or not) with
        backoff; ``/readyz`` names it while it keeps failing."""
        health = self.health.setdefault(name, TaskHealth(name))

        async def run() -> None:
            await loop()

        await supervise(run, health=health, log=log, stop=self.stopping)

    # --- records.changed → push_jobs --------------------------------------------------------

    async def consume(self) -> None:
        # A batch this loop did not finish (Postgres away mid-enqueue, a failed commit)
        # was read past by getmany: resume from the committed offsets, or the next commit
        # would skip it. Done at every (re)start, so whatever ended the last run.
        await self.rewind()
        while not self.stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
            if not batches:
                continue
            rows = []
            for messages in batches.values():
                for message in messages:
                    rows.extend(await self._targets(message.value, message.offset))
            await enqueue(self.pool, rows)
            # The pushes are committed rows now: the worker may take them while the offsets
            # travel to Kafka (a broker round trip the push used to wait for: 10 ms p50 at
            # 5 webhooks/s, 60 ms at 50/s on a loaded machine; bench/README.md, "Eighth
            # round"). A crash before the commit re-reads the batch; queueing it again is a
            # no-op, or a push of a version the link already has, which is skipped.
            if rows:
                self.wake.set()
            # Offsets move only after the pushes they imply are durable; exactly the
            # offsets read, so a rebalance meanwhile cannot commit what was not.
            await self.consumer.commit(
                {tp: messages[-1].offset + 1 for tp, messages in batches.items() if messages}
            )

    async def rewind(self) -> None:
        """Move every assigned partition back to its committed offset (its start when
        nothing was committed: the consumer's ``auto_offset_reset`` is earliest)."""
        for tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    async def _targets(self, value: bytes | None, offset: int) -> list[PushRow]:
        try:
            record = CanonicalRecord.model_validate_json(value or b"")
        except ValidationError as exc:
            # The relay only publishes what it built from a committed row: an invalid
            # event is a bug or a foreign producer. Log it; there is nothing to push.
            log.error("records.changed offset %d is not a CanonicalRecord: %s", offset, exc)
            return []
        targets = await self.router.targets(record)
        metrics.ENQUEUED.labels(record.entity_type).inc(len(targets))
        return push_rows(record, targets)

    # --- push_jobs → providers -----------------------------------------------------------------

    async def work(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        while not self.stopping.is_set():
            # Cleared before looking, not after: a wake-up that comes while we claim (new
            # rows, a freed slot) makes the wait below return at once instead of being lost.
            self.wake.clear()
            free = self.concurrency - len(self.in_flight)
            due: float | None = None
            if free > 0:
                jobs, due = await claim(self.pool, free, self.lease_seconds)
                for job in jobs:
                    await slots.acquire()
                    task = asyncio.create_task(self._run(job, slots), name=f"push-{job.id}")
                    self.in_flight.add(task)
                    task.add_done_callback(self.in_flight.discard)
                if len(jobs) == free:
                    continue  # more may be due right now
            timeout = IDLE_POLL_SECONDS if due is None else min(due, IDLE_POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(timeout, 0.01))

    async def _run(self, job: Job, slots: asyncio.Semaphore) -> None:
        queued = True
        try:
            queued = await self.pusher.run(job)
        except Exception:
            # A bug or a database outage: the lease runs out and the job is retried.
            log.exception("push %s failed unexpectedly", job.id)
        finally:
            slots.release()
            # Wake the loop only when it has something to do: this push freed the slot it
            # waited for (every slot was taken), or left its row queued (re-armed for a newer
            # version, rescheduled) with a due time the loop does not know. A push that just
            # finished its row would cost a claim that finds nothing.
            if queued or len(self.in_flight) >= self.concurrency:
                self.wake.set()

    async def drain(self) -> None:
        """Graceful stop: claim nothing new, let pushes in flight finish."""
        self.stopping.set()
        self.wake.set()
        if self.in_flight:
            await asyncio.gather(*self.in_flight, return_exceptions=True)

    # --- gauges --------------------------------------------------------------------------------

    async def stats(self) -> None:
        waited: dict[int, float] = {}
        while not self.stopping.is_set():
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                depth, lag = await queue_stats(self.pool)
                metrics.QUEUE_DEPTH.set(depth)
                metrics.QUEUE_LAG_SECONDS.set(lag)
            circuit: dict[str, int] = defaultdict(int)
            reauth: dict[str, int] = defaultdict(int)
            expiry: dict[str, float] = {}
            for handle in self.clients.cached():
                provider = handle.info.provider
                circuit[provider] = max(circuit[provider], CIRCUIT_GAUGE[handle.circuit_state])
                reauth[provider] += int(handle.needs_reauth)
                left = handle.token_seconds_left
                if left is not None:
                    expiry[provider] = min(expiry.get(provider, left), left)
                key = id(handle.bucket)
                delta = handle.rate_waited_seconds - waited.get(key, 0.0)
                waited[key] = handle.rate_waited_seconds
                metrics.RATE_LIMIT_WAIT_SECONDS.labels(provider).inc(max(0.0, delta))
            for provider, state in circuit.items():
                metrics.CIRCUIT_STATE.labels(provider).set(state)
                metrics.NEEDS_REAUTH.labels(provider).set(reauth[provider])
            for provider, left in expiry.items():
                metrics.TOKEN_EXPIRY_SECONDS.labels(provider).set(left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=STATS_SECONDS)
