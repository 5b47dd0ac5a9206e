"""What a failure means, decided in one place: a dependency that is away right now
(retry in place, never drop the work), or something else (the caller decides, and never
acknowledges what it did not finish). Our own errors say it by their base
(schemas.errors: RetryLater is transient); the rules below are for everyone else's.

Every service retries the same things: PostgreSQL restarting, failing over or out of
connections; Kafka's broker away or electing a leader; the network. A restart shows up
as many different exceptions (measured with PostgreSQL restarted under load:
``CannotConnectNowError``, ``ConnectionDoesNotExistError``, ``InterfaceError``, and
``InternalClientError('cannot switch to state 15; another operation (2) is in
progress')`` from the rollback of a transaction whose connection died mid-query), so
PostgreSQL errors are classified by SQLSTATE class, not by a list of types.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from schemas.errors import CrmsyncError, RetryLater

T = TypeVar("T")

# SQLSTATEs (or their prefixes) that say "PostgreSQL cannot do this now", from the
# PostgreSQL manual's appendix A: 08 connection exception, 53 insufficient resources
# (too many connections, disk full, out of memory), 57P operator intervention (admin or
# crash shutdown, cannot connect now), 57014 query canceled (statement timeout, a
# cancelled backend), 58 system error (I/O), 40001 serialization failure, 40P01 deadlock,
# 55P03 lock not available, 25006 read-only transaction (a failover landed us on a
# standby), 28 invalid authorization (a rotated password: an operator fix, and
# retrying loses nothing while dropping would).
TRANSIENT_SQLSTATES = ("08", "53", "57P", "57014", "58", "40001", "40P01", "55P03", "25006", "28")

# Kafka errors that say "this record cannot be stored", not "Kafka is away".
_KAFKA_RECORD_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
_ASYNCPG_CLIENT_BUGS = (
    asyncpg.exceptions.ClientConfigurationError,
    asyncpg.exceptions.UnsupportedClientFeatureError,
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` says a dependency is away right now: retry, never skip.

    asyncpg's interface and internal client errors count: they mean the connection is in
    a state it cannot be used in (closed, or a protocol operation cut short), which is
    what a restart leaves behind. A cause or context that is transient makes the whole
    error transient: a rollback failing after the connection died raises its own error
    with the real one as context.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_alone(current):
            return True
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return False


def _transient_alone(exc: BaseException) -> bool:
    if isinstance(exc, CrmsyncError):
        # Ours say what they are, whatever else they derive from (EgressRefusedError is
        # an OSError for aiohttp's sake, yet no retry lifts a refusal). Their causes are
        # still looked at by the caller's walk.
        return isinstance(exc, RetryLater)
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state.startswith(TRANSIENT_SQLSTATES)
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        # Misconfiguration does not heal by waiting; a stale type cache does (a migration
        # ran meanwhile: the next connection reads the catalog afresh).
        return not isinstance(exc, _ASYNCPG_CLIENT_BUGS)
    if isinstance(exc, KafkaError):
        return not isinstance(exc, _KAFKA_RECORD_ERRORS)
    # ConnectionError, socket errors, DNS: OSError; TimeoutError covers asyncio's too.
    return isinstance(exc, OSError | TimeoutError)


def describe(exc: BaseException) -> str:
    """``Type: message``, short enough for a log line or a readiness answer."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


@dataclass
class Backoff:
    """Exponential backoff with full jitter, capped; ``reset`` after a success."""

    base_seconds: float = 0.2
    cap_seconds: float = 30.0
    attempt: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * float(2**self.attempt))
        self.attempt += 1
        # Never below half the ceiling: many workers retrying at once spread out, and
        # none hammers a dependency that is coming back up.
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.attempt = 0


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    log: logging.Logger,
    backoff: Backoff | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run ``operation`` until it succeeds, waiting out transient errors for as long as
    they last; any other error propagates at once. For work that was acknowledged
    upstream: giving up would lose it."""
    backoff = backoff or Backoff()
    while True:
        try:
            return await operation()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = backoff.next_delay()
            log.warning("%s: %s; retrying in %.1fs", what, describe(exc), delay)
            await asyncio.sleep(delay)
