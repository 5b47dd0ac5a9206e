"""One disciplined attempt at a provider call: circuit breaker, rate limit, concurrency,
and a failure classified into what the caller should do next.

Callers decide how to retry: the processor's hydration retries a few times in place
(bounded), the outbound service schedules the retry in Postgres so a slow provider never
blocks other entities.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from connectors.http import (
    AuthError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    RefusedError,
    UnsupportedOperationError,
)
from connectors.runtime import Handle
from connectors.spec import ApiClient
from schemas.errors import DeadLetter, ProviderRuleError

T = TypeVar("T")
log = logging.getLogger(__name__)


class CallFailedError(DeadLetter):
    """A call that did not succeed, and whether trying again later can help: when the
    caller's bounded retries run out (or ``retryable`` is False), its work is parked.

    ``reason`` is a bounded label: ``circuit_open``, ``rate_limited``, ``needs_reauth``,
    ``auth``, ``provider_4xx``, ``provider_5xx``, ``network``, ``not_found``,
    ``unsupported``, and the refusals of connectors.http.RefusedError: ``address_refused``,
    ``redirect_refused``, ``response_too_large``. ``retry_after`` is the earliest sensible
    retry, in seconds, when known.
    """

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        error: ProviderError | None = None,
    ) -> None:
        super().__init__(
            reason, str(error) if error else "", message=f"{reason}: {error}" if error else reason
        )
        self.retryable = retryable
        self.retry_after = retry_after
        self.error = error
        self.written = error.written if error is not None else None


async def attempt(
    handle: Handle, call: Callable[[ApiClient], Awaitable[T]], *, max_wait_seconds: float
) -> T:
    """Run ``call`` once under the connection's breaker, bucket and concurrency limit.

    Waits for the rate limit when the wait is at most ``max_wait_seconds``; a longer one
    (a provider's Retry-After of minutes) is a retryable ``rate_limited`` failure instead,
    so the caller can do other work meanwhile.
    """
    if handle.needs_reauth:
        raise CallFailedError("needs_reauth", retryable=True, retry_after=60.0)
    probe = await _admit(handle, max_wait_seconds)
    async with handle.concurrency:
        try:
            result = await call(handle.client)
        except asyncio.CancelledError:
            if handle.shared is None:
                handle.breaker.release_probe()
            # A shared probe's lease runs out (limits.PROBE_LEASE_SECONDS).
            raise
        except (NotFoundError, UnsupportedOperationError) as exc:
            await _record(handle, probe, success=True)
            raise CallFailedError(exc.reason, retryable=False, error=exc) from None
        except ProviderRuleError:
            # The provider is up and said no by its rules (or the client knew it would):
            # the caller parks the work with the rule, as it is.
            await _record(handle, probe, success=True)
            raise
        except RefusedError as exc:
            # Our rules, not the provider's health: the breaker is not told it failed.
            await _record(handle, probe, success=True)
            raise CallFailedError(exc.reason, retryable=False, error=exc) from None
        except AuthError as exc:
            # The provider is up; our credentials are not.
            await _record(handle, probe, success=True)
            if handle.needs_reauth:
                raise CallFailedError(
                    "needs_reauth", retryable=True, retry_after=60.0, error=exc
                ) from None
            raise CallFailedError("auth", retryable=False, error=exc) from None
        except ProviderError as exc:
            # A 4xx says our request is wrong, not that the provider is unwell.
            await _record(handle, probe, success=not exc.transient)
            if exc.status == 429 or isinstance(exc, RateLimitedError):
                pause = exc.retry_after if exc.retry_after is not None else 1.0
                await _penalise(handle, pause)
                raise CallFailedError(
                    "rate_limited", retryable=True, retry_after=pause, error=exc
                ) from None
            if exc.transient:
                reason = "network" if exc.status is None else "provider_5xx"
                raise CallFailedError(
                    reason, retryable=True, retry_after=exc.retry_after, error=exc
                ) from None
            raise CallFailedError("provider_4xx", retryable=False, error=exc) from None
    await _record(handle, probe, success=True)
    return result


async def _admit(handle: Handle, max_wait_seconds: float) -> bool:
    """Wait for the breaker and a token; whether this call is the half-open probe."""
    shared = handle.shared
    if shared is None:
        wait = handle.breaker.retry_in()
        if wait > 0:
            raise CallFailedError("circuit_open", retryable=True, retry_after=wait)
        delay = handle.bucket.delay()
        if delay > max_wait_seconds:
            handle.breaker.release_probe()
            raise CallFailedError("rate_limited", retryable=True, retry_after=delay)
        await handle.bucket.acquire()
        return False
    admission = await shared.admit(max_wait_seconds)
    if admission.retry_in > 0:
        raise CallFailedError("circuit_open", retryable=True, retry_after=admission.retry_in)
    if not admission.granted:
        raise CallFailedError("rate_limited", retryable=True, retry_after=admission.wait)
    if admission.wait > 0:
        shared.waited_seconds += admission.wait
        await asyncio.sleep(admission.wait)
    return admission.probe


async def _record(handle: Handle, probe: bool, *, success: bool) -> None:
    if handle.shared is None:
        handle.breaker.record(success=success)
        return
    try:
        await handle.shared.record(success=success, probe=probe)
    except Exception as exc:  # noqa: BLE001 - the call's own outcome must reach the caller
        _unrecorded(handle, "result", exc)


async def _penalise(handle: Handle, seconds: float) -> None:
    if handle.shared is None:
        handle.bucket.penalise(seconds)
        return
    try:
        await handle.shared.penalise(seconds)
    except Exception as exc:  # noqa: BLE001 - as in _record
        _unrecorded(handle, "429 pause", exc)


def _unrecorded(handle: Handle, what: str, exc: Exception) -> None:
    """The store is away (PostgreSQL down): the call's outcome (a write the provider took,
    a 429) still goes to the caller; the shared breaker misses one result."""
    log.warning(
        "shared provider budget: could not record a call's %s: %s",
        what,
        exc,
        extra={"connection": str(handle.info.id), "provider": handle.info.provider},
    )
