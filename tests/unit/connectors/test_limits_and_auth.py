"""The delivery discipline shared by hydration and pushes: token bucket, breaker, OAuth2."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from connectors.calls import CallFailedError, attempt
from connectors.http import (
    AddressRefusedError,
    AuthError,
    OAuth2Auth,
    OAuthTokens,
    ProviderError,
    RedirectRefusedError,
    ResponseTooLargeError,
    parse_retry_after,
)
from connectors.limits import AsyncTokenBucket, BreakerPolicy, CircuitBreaker, CircuitState
from connectors.runtime import Handle
from connectors.spec import RateLimit
from tests.unit.connections import connection_info, handle_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_paces_at_the_rate() -> None:
    clock = Clock()
    bucket = AsyncTokenBucket(RateLimit(rate=60, per_seconds=60, burst=2), clock)
    assert bucket.delay() == 0
    bucket._tokens -= 2  # two requests taken
    assert bucket.delay() == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.delay() == pytest.approx(0.5)


def test_bucket_penalty_honours_retry_after() -> None:
    clock = Clock()
    bucket = AsyncTokenBucket(RateLimit(rate=10, per_seconds=1, burst=10), clock)
    bucket.penalise(30)
    assert bucket.delay() == pytest.approx(30)
    clock.now += 31
    assert bucket.delay() == 0


def test_breaker_opens_on_failure_ratio_then_half_opens_one_probe_and_recovers() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(window=10, min_calls=4, open_seconds=30), clock)
    for ok in (True, False, False):
        breaker.record(success=ok)
    assert breaker.state is CircuitState.CLOSED  # fewer than min_calls
    breaker.record(success=False)
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_in() == pytest.approx(30)
    clock.now += 30
    assert breaker.retry_in() == 0  # the probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.retry_in() > 0  # everyone else waits for it
    breaker.record(success=False)
    assert breaker.state is CircuitState.OPEN
    clock.now += 30
    assert breaker.retry_in() == 0
    breaker.record(success=True)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.retry_in() == 0


def test_released_probe_lets_the_next_caller_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(min_calls=1, open_seconds=1), clock)
    breaker.record(success=False)
    clock.now += 1
    assert breaker.retry_in() == 0
    breaker.release_probe()
    assert breaker.retry_in() == 0


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def tokens(expires_at: float) -> OAuthTokens:
    return OAuthTokens("at-1", "rt-1", expires_at, "client", "secret", "/oauth/token")


async def test_concurrent_requests_share_one_refresh_and_save_before_use() -> None:
    clock = Clock()
    saved: list[OAuthTokens] = []
    calls = 0

    async def refresh(old: OAuthTokens) -> OAuthTokens:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return replace(old, access_token="at-2", refresh_token="rt-2", expires_at=clock.now + 1800)

    async def save(new: OAuthTokens) -> None:
        saved.append(new)

    auth = OAuth2Auth(tokens(clock.now + 60), refresh, save, clock=clock)
    headers = await asyncio.gather(*(auth.headers() for _ in range(20)))
    assert calls == 1
    assert [t.access_token for t in saved] == ["at-2"]
    assert {h["Authorization"] for h in headers} == {"Bearer at-2"}


async def test_a_refused_refresh_fails_fast_until_reset() -> None:
    calls = 0

    async def refresh(old: OAuthTokens) -> OAuthTokens:
        nonlocal calls
        calls += 1
        raise ProviderError("invalid_grant", status=400)

    async def save(new: OAuthTokens) -> None:
        raise AssertionError("nothing to save")

    auth = OAuth2Auth(tokens(0), refresh, save, clock=Clock())
    for _ in range(3):
        with pytest.raises(AuthError):
            await auth.headers()
    assert calls == 1
    auth.reset(tokens(10_000))
    assert (await auth.headers())["Authorization"] == "Bearer at-1"


async def test_a_transient_refresh_failure_is_retried_next_time() -> None:
    outcomes = [ProviderError("timeout"), None]

    async def refresh(old: OAuthTokens) -> OAuthTokens:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return replace(old, access_token="at-2", expires_at=10_000)

    async def save(new: OAuthTokens) -> None:
        return None

    auth = OAuth2Auth(tokens(0), refresh, save, clock=Clock())
    with pytest.raises(ProviderError):
        await auth.headers()
    assert auth.failed is None
    assert (await auth.headers())["Authorization"] == "Bearer at-2"


def _handle() -> Handle:
    return handle_for(connection_info("ascora", {}))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AddressRefusedError("GET /x: loopback", request="GET /x"), "address_refused"),
        (RedirectRefusedError("GET /x answered 302", status=302), "redirect_refused"),
        (ResponseTooLargeError("GET /x: over the cap", status=200), "response_too_large"),
    ],
)
async def test_answers_our_egress_policy_refuses_are_not_retried(
    error: ProviderError, reason: str
) -> None:
    """The same call would be refused again: a dead letter now, not ten attempts later,
    and no mark against the provider's health."""
    handle = _handle()

    async def call(client: object) -> None:
        raise error

    with pytest.raises(CallFailedError) as caught:
        await attempt(handle, call, max_wait_seconds=0)
    assert caught.value.reason == reason
    assert not caught.value.retryable
    assert caught.value.error is error
    assert handle.breaker.state == CircuitState.CLOSED
