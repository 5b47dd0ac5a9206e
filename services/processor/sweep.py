"""The sweep of waiting changes (invariant 10): release those whose reference is linked
now, dead-letter those that waited too long, and keep the waiting gauge current.

It runs every few seconds, and at once after a batch applied something while changes
wait (the record they wait for may have just been linked): a payment parked for its
invoice is applied right after the invoice commits. While nothing waits, a batch costs
it nothing but a comparison. Every processor worker runs one; they share the work
through row locks (``SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import asyncpg

from crmsync.common.faults import describe, is_transient
from services.processor import metrics
from services.processor.apply import Applied
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from services.processor.waiting import count_waiting

log = logging.getLogger(__name__)

# 5 s: a change parked while its record was being linked in another transaction (neither
# saw the other) waits this long at most; the waiting gauge is as fresh, three times per
# Prometheus scrape interval of 15 s.
INTERVAL_SECONDS = 5.0
# Records released per transaction, and transactions per round: a round stays short, and
# a backlog drains over a few rounds.
RELEASE_RECORDS = 200
RELEASE_ROUNDS = 10
EXPIRE_LIMIT = 500
# Woken rounds come at most this often: while a change waits for a record that does not
# come, every applied batch wakes the sweep, and each round reads every waiting row.
MIN_GAP_SECONDS = 0.25


class WaitingSweep:
    def __init__(
        self,
        processor: Processor,
        pool: asyncpg.Pool,
        *,
        wait_seconds: float,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.processor = processor
        self.pool = pool
        self.wait_seconds = wait_seconds
        self.interval = interval
        self.waiting = 0  # as last counted, plus what was parked since
        self._wake = asyncio.Event()

    def after_commit(self, results: Sequence[Applied | None]) -> None:
        """Told of every committed batch: one that applied changes while others wait, or
        parked some, wakes the sweep. (A batch applied in two transactions can park a
        payment in one while the other commits its invoice: neither saw the other.)"""
        parked = sum(1 for r in results if r is not None and r.outcome is Outcome.WAITING)
        self.waiting += parked
        if parked or (
            self.waiting and any(r is not None and r.outcome is Outcome.APPLIED for r in results)
        ):
            self._wake.set()

    async def round(self) -> tuple[int, int]:
        """One round: (released, expired)."""
        released = 0
        for _ in range(RELEASE_ROUNDS):
            taken = await self.processor.release(RELEASE_RECORDS)
            released += taken
            if not taken:
                break
        expired = 0
        while True:
            n = await self.processor.expire(self.wait_seconds, EXPIRE_LIMIT)
            expired += n
            if n < EXPIRE_LIMIT:
                break
        self.waiting = await count_waiting(self.pool)
        metrics.WAITING_CHANGES.set(self.waiting)
        if released or expired:
            log.info(
                "waiting changes: %d released, %d dead-lettered, %d waiting",
                released,
                expired,
                self.waiting,
            )
        return released, expired

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.round()
            except Exception as exc:
                # Skipping a round is harmless; anything but an outage goes to the supervisor.
                if not is_transient(exc):
                    raise
                log.warning("waiting sweep skipped, postgres unavailable: %s", describe(exc))
            await asyncio.sleep(min(MIN_GAP_SECONDS, self.interval))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
