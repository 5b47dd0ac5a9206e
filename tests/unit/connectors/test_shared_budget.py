"""SharedBudget over a fake store: how many round trips a call costs, and what a process
may keep of the tokens it took at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.limits import (
    HOLD_SECONDS,
    Admission,
    BreakerPolicy,
    CircuitState,
    SharedBudget,
)
from connectors.spec import RateLimit


@dataclass
class FakeStore:
    """Grants what is asked for; counts round trips and the successes reported."""

    state: CircuitState = CircuitState.CLOSED
    admits: list[int] = field(default_factory=list)
    successes: int = 0

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
        self.admits.append(want)
        self.successes += successes
        return Admission(0.0, False, 0.0, True, self.state, taken=want)

    async def record(
        self, key: str, policy: BreakerPolicy, *, success: bool, probe: bool, successes: int
    ) -> CircuitState:
        self.successes += successes
        self.state = CircuitState.OPEN
        return self.state

    async def penalise(self, key: str, limit: RateLimit, seconds: float) -> None:
        pass


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def budget(store: FakeStore, clock: Clock, per_second: float) -> SharedBudget:
    limit = RateLimit(rate=per_second, per_seconds=1, burst=int(per_second))
    return SharedBudget(store, "c", limit, BreakerPolicy(), clock)


async def test_a_slow_limit_costs_one_round_trip_a_call() -> None:
    store, clock = FakeStore(), Clock()
    xero = budget(store, clock, 1.0)  # 60 a minute
    for _ in range(3):
        await xero.admit(1.0)
    assert store.admits == [1, 1, 1]


async def test_a_high_limit_takes_a_quarter_second_of_tokens_a_round_trip() -> None:
    store, clock = FakeStore(), Clock()
    fast = budget(store, clock, 100.0)
    for _ in range(50):
        await fast.admit(1.0)
    assert store.admits == [25, 25]


async def test_held_tokens_are_dropped_after_the_hold_and_when_the_breaker_opens() -> None:
    store, clock = FakeStore(), Clock()
    fast = budget(store, clock, 100.0)
    await fast.admit(1.0)
    clock.now += HOLD_SECONDS + 0.01
    await fast.admit(1.0)
    assert len(store.admits) == 2
    await fast.record(success=False, probe=False)
    await fast.admit(1.0)
    assert len(store.admits) == 3


async def test_successes_travel_with_the_next_round_trip() -> None:
    store, clock = FakeStore(), Clock()
    xero = budget(store, clock, 1.0)
    await xero.admit(1.0)
    await xero.record(success=True, probe=False)
    await xero.record(success=True, probe=False)
    assert store.successes == 0
    await xero.admit(1.0)
    assert store.successes == 2
