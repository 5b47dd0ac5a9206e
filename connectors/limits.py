"""Delivery discipline shared by everything that calls a provider: token buckets,
backoff with full jitter, and a circuit breaker. Pure state machines over a clock the
caller passes in, so tests drive time instead of sleeping; and ``SharedBudget``, the same
bucket and breaker kept in a store every process shares (``BudgetStore``: the services
pass in PostgreSQL's, ``crmsync.common.budgets``), so N workers spend one provider budget.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from connectors.spec import RateLimit


class AsyncTokenBucket:
    """Waits for a token instead of refusing: callers queue fairly behind each other."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tokens = float(limit.burst)
        self._at = clock()
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            float(self.limit.burst), self._tokens + (now - self._at) * self.limit.per_second
        )
        self._at = now

    def delay(self) -> float:
        """Seconds until a token is free (0 if one is now); takes nothing."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.limit.per_second

    async def acquire(self) -> float:
        """Take a token, waiting as long as needed; returns the seconds waited."""
        waited = 0.0
        async with self._lock:
            while (wait := self.delay()) > 0:
                waited += wait
                await asyncio.sleep(wait)
            self._tokens -= 1
        self.waited_seconds += waited
        return waited

    def penalise(self, seconds: float) -> None:
        """The provider said 429 / Retry-After: nobody calls it for ``seconds``."""
        self._refill()
        self._tokens = min(self._tokens, 1 - seconds * self.limit.per_second)


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """AWS's "full jitter": uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(cap, base * (2**attempt))
    return (rng or random).uniform(0, ceiling)


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Numeric values for a Prometheus gauge (0 healthy, 1 probing, 2 refusing).
CIRCUIT_GAUGE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    window: int = 20  # the last N calls decide
    min_calls: int = 5  # fewer than this never opens the breaker
    failure_ratio: float = 0.5
    open_seconds: float = 30.0  # before a half-open probe


class CircuitBreaker:
    """Open on a failure ratio over the last calls; after ``open_seconds`` let one probe
    through (half-open); its success closes the breaker, its failure re-opens it."""

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._results: deque[bool] = deque(maxlen=self.policy.window)
        self.state = CircuitState.CLOSED
        self._opened_at = 0.0
        self._probing = False

    def retry_in(self) -> float:
        """0 when a call may go now; else the seconds until the breaker lets one through.

        In half-open state one caller gets 0 (the probe); the others wait for its result.
        """
        if self.state is CircuitState.CLOSED:
            return 0.0
        if self.state is CircuitState.OPEN:
            left = self._opened_at + self.policy.open_seconds - self._clock()
            if left > 0:
                return left
            self.state = CircuitState.HALF_OPEN
            self._probing = False
        if self._probing:
            return min(1.0, self.policy.open_seconds)
        self._probing = True
        return 0.0

    def release_probe(self) -> None:
        """The caller given the half-open probe did not make the call after all."""
        if self.state is CircuitState.HALF_OPEN:
            self._probing = False

    def record(self, *, success: bool) -> None:
        if self.state is CircuitState.HALF_OPEN:
            self._probing = False
            if success:
                self.state = CircuitState.CLOSED
                self._results.clear()
            else:
                self._open()
            return
        self._results.append(success)
        failures = self._results.count(False)
        if (
            len(self._results) >= self.policy.min_calls
            and failures / len(self._results) >= self.policy.failure_ratio
        ):
            self._open()

    def _open(self) -> None:
        self.state = CircuitState.OPEN
        self._opened_at = self._clock()
        self._results.clear()


# A half-open probe is its caller's this long, then anyone's (its caller died): longer
# than a call may take (connectors.http.DEFAULT_TIMEOUT_SECONDS, 15 s, and a token wait).
PROBE_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Admission:
    """A shared budget's answer to "may I call now?".

    ``retry_in`` > 0: the breaker refuses the call for that long. Else ``granted``: a token
    was taken, call after ``wait`` seconds; not granted: the wait would be longer than the
    caller accepts, nothing was taken. ``probe``: this caller holds the half-open probe."""

    retry_in: float
    probe: bool
    wait: float
    granted: bool
    state: CircuitState
    # Tokens taken: the caller's one, and more it may spend within HOLD_SECONDS.
    taken: int = 1


# Tokens a process takes from a shared budget at once are its own to spend for this long
# at most (then they are dropped): a limit of R calls a second costs one round trip per
# R / 4 calls instead of per call, and the provider sees at most R / 4 calls more in any
# window than the budget allows. 64 at most: a bench's unlimited budget would hoard.
HOLD_SECONDS = 0.25
MAX_BATCH = 64


class BudgetStore(Protocol):
    """Where a connection's bucket and breaker live when every process must share them.
    ``successes``: calls that succeeded since this process last reported, counted in the
    breaker's window with this round trip."""

    async def admit(
        self,
        key: str,
        limit: RateLimit,
        policy: BreakerPolicy,
        *,
        max_wait: float,
        successes: int,
        want: int = 1,
    ) -> Admission: ...

    async def record(
        self, key: str, policy: BreakerPolicy, *, success: bool, probe: bool, successes: int
    ) -> CircuitState: ...

    async def penalise(self, key: str, limit: RateLimit, seconds: float) -> None: ...


class SharedBudget:
    """One connection's bucket and breaker in a ``BudgetStore``: one round trip to admit a
    call (breaker and token together) or none while tokens taken with an earlier one last
    (``HOLD_SECONDS``); none for a success (counted here, reported with the next round
    trip), one for a failure, a probe's result or a 429. A breaker another process opened
    stops this one's calls at its next round trip: within ``HOLD_SECONDS``."""

    def __init__(
        self,
        store: BudgetStore,
        key: str,
        limit: RateLimit,
        policy: BreakerPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.key = key
        self.limit = limit
        self.policy = policy
        self._clock = clock
        # As the last round trip saw it: what the metrics report.
        self.state = CircuitState.CLOSED
        self.waited_seconds = 0.0
        self._successes = 0
        self._held = 0
        self._held_until = 0.0

    async def admit(self, max_wait: float) -> Admission:
        if self._held > 0 and self._clock() < self._held_until:
            self._held -= 1
            return Admission(0.0, False, 0.0, True, self.state)
        want = max(1, min(MAX_BATCH, int(self.limit.per_second * HOLD_SECONDS)))
        successes, self._successes = self._successes, 0
        try:
            admission = await self.store.admit(
                self.key,
                self.limit,
                self.policy,
                max_wait=max_wait,
                successes=successes,
                want=want,
            )
        except BaseException:
            self._successes += successes
            raise
        self.state = admission.state
        if admission.granted and admission.taken > 1:
            self._held = admission.taken - 1
            self._held_until = self._clock() + HOLD_SECONDS
        return admission

    async def record(self, *, success: bool, probe: bool) -> None:
        if success and not probe:
            self._successes += 1
            return
        successes, self._successes = self._successes, 0
        self.state = await self.store.record(
            self.key, self.policy, success=success, probe=probe, successes=successes
        )
        if self.state is not CircuitState.CLOSED:
            self._held = 0

    async def penalise(self, seconds: float) -> None:
        self._held = 0
        await self.store.penalise(self.key, self.limit, seconds)
