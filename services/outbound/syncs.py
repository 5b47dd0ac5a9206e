"""Backfills and reconciliation runs in the service: queue the reconciliations that are
due, claim pending runs (from the schedule or the admin API) and run them, a few at a
time, each within its connection's rate limit — the same limit the pushes use, so a
large backfill slows this connection's pushes rather than earning it a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from crmsync.application.sync import jobs
from crmsync.application.sync.jobs import SyncJob
from crmsync.application.sync.runner import SyncRunner
from crmsync.application.sync.schedule import ReconcilePolicy, schedule_due
from crmsync.settings.outbound import OutboundSettings

log = logging.getLogger(__name__)

# How soon a run queued by the admin API or the CLI's --detach starts.
POLL_SECONDS = 2.0


class SyncWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        runner: SyncRunner,
        *,
        concurrency: int,
        policy: ReconcilePolicy,
        schedule_seconds: float,
        stopping: asyncio.Event,
    ) -> None:
        self.pool = pool
        self.runner = runner
        self.concurrency = concurrency
        self.policy = policy
        self.schedule_seconds = schedule_seconds
        self.stopping = stopping
        self.running: dict[asyncio.Task[SyncJob], SyncJob] = {}

    @classmethod
    def from_settings(
        cls,
        settings: OutboundSettings,
        pool: asyncpg.Pool,
        runner: SyncRunner,
        stopping: asyncio.Event,
    ) -> SyncWorker:
        return cls(
            pool,
            runner,
            concurrency=settings.outbound_sync_concurrency,
            policy=ReconcilePolicy(
                interval_seconds=settings.outbound_reconcile_interval_seconds,
                full_interval_seconds=settings.outbound_full_reconcile_interval_seconds,
                overlap_seconds=settings.outbound_reconcile_overlap_seconds,
            ),
            schedule_seconds=settings.outbound_schedule_check_seconds,
            stopping=stopping,
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_schedule = 0.0
        while not self.stopping.is_set():
            if loop.time() >= next_schedule:
                await schedule_due(self.pool, self.policy)
                next_schedule = loop.time() + self.schedule_seconds
            while len(self.running) < self.concurrency:
                job = await jobs.claim_next(
                    self.pool,
                    owner=self.runner.owner,
                    lease_seconds=self.runner.policy.lease_seconds,
                )
                if job is None:
                    break
                log.info(
                    "%s %s of connection %s",
                    "resuming" if job.resumed else "starting",
                    job.kind,
                    job.connection_id,
                    extra={"connection": str(job.connection_id), "sync_job": str(job.id)},
                )
                task = asyncio.create_task(self._run(job), name=f"sync-{job.id}")
                self.running[task] = job
                task.add_done_callback(lambda t: self.running.pop(t, None))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.stopping.wait(), timeout=min(POLL_SECONDS, self.schedule_seconds)
                )

    async def _run(self, job: SyncJob) -> SyncJob:
        try:
            return await self.runner.run(job)
        except Exception:
            # A bug or a database outage: the lease runs out and the run resumes later.
            log.exception("sync job %s stopped unexpectedly", job.id)
            raise

    async def stop(self) -> None:
        """Stop runs at once: each resumes from its checkpoint when a runner takes it."""
        held = dict(self.running)
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        for task, job in held.items():
            if task.cancelled():
                await jobs.release(self.pool, job.id, owner=self.runner.owner)
