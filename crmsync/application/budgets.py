"""Provider budgets in PostgreSQL (``provider_budgets``, migration 0018): the one
data-access module for them (here, not in crmsync.common: it speaks connectors' types),
and the ``connectors.limits.BudgetStore`` every service
passes to its clients, so each connection's rate limit and circuit breaker are shared
by every process that calls the provider (issue 18).

The decisions are made in the database, each under the row's lock in one statement (the
functions of migration 0018): a token bucket read and spent by two processes apart would
grant the same token twice. One round trip per call, on a pool connection; successes
travel with the next admission.
"""

from __future__ import annotations

import uuid

import asyncpg

from connectors.limits import Admission, BreakerPolicy, CircuitState
from connectors.spec import RateLimit

_ADMIT = "SELECT * FROM provider_budget_admit($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_RECORD = "SELECT provider_budget_record($1, $2, $3, $4, $5, $6, $7)"
_PENALISE = "SELECT provider_budget_penalise($1, $2, $3, $4)"
# PostgreSQL's UUID parse per call, saved: connection ids repeat.
_IDS: dict[str, uuid.UUID] = {}


def _id(key: str) -> uuid.UUID:
    found = _IDS.get(key)
    if found is None:
        found = _IDS[key] = uuid.UUID(key)
    return found


class PostgresBudgets:
    """``connectors.limits.BudgetStore`` on ``provider_budgets``."""

    def __init__(self, pool: asyncpg.Pool, *, probe_seconds: float) -> None:
        self.pool = pool
        self.probe_seconds = probe_seconds

    async def admit(
        self,
        key: str,
        limit: RateLimit,
        policy: BreakerPolicy,
        *,
        max_wait: float,
        successes: int,
        want: int = 1,
    ) -> Admission:
        row = await self.pool.fetchrow(
            _ADMIT,
            _id(key),
            limit.per_second,
            float(limit.burst),
            max_wait,
            successes,
            policy.window,
            policy.open_seconds,
            self.probe_seconds,
            want,
        )
        assert row is not None  # noqa: S101 - a function's OUT row is always there
        return Admission(
            retry_in=float(row["retry_in"]),
            probe=bool(row["probe"]),
            wait=float(row["wait"]),
            granted=bool(row["granted"]),
            state=CircuitState(row["state"]),
            taken=int(row["taken"]),
        )

    async def record(
        self, key: str, policy: BreakerPolicy, *, success: bool, probe: bool, successes: int
    ) -> CircuitState:
        state = await self.pool.fetchval(
            _RECORD,
            _id(key),
            success,
            probe,
            successes,
            policy.window,
            policy.min_calls,
            policy.failure_ratio,
        )
        return CircuitState(state)

    async def penalise(self, key: str, limit: RateLimit, seconds: float) -> None:
        await self.pool.execute(_PENALISE, _id(key), limit.per_second, float(limit.burst), seconds)
