"""Long-running loops that never end quietly: restarted with backoff after any error, and
visible in ``/readyz`` and the metrics while they fail.

The outbox relay used to end for good on an error outside its list, and pushes stalled
until someone restarted the process; outbound's push loop died on an asyncpg error its
restart wrapper did not catch (1,897 pushes stuck). A supervised loop cannot end except
by cancellation, and an operator sees which one is failing, since when, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from crmsync.common.faults import Backoff, describe, is_transient
from crmsync.common.metrics import TASK_FAILING, TASK_RESTARTS

# A loop retrying for longer than this makes /readyz answer 503: long enough to ride out
# a PostgreSQL restart (seconds) without paging anyone, short enough to page well before
# a backlog matters.
NOT_READY_AFTER_SECONDS = 30.0


class TaskHealth:
    """Whether one loop (or the batch an agent is on) is failing, since when, and why."""

    def __init__(
        self,
        name: str,
        *,
        not_ready_after_seconds: float = NOT_READY_AFTER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.not_ready_after_seconds = not_ready_after_seconds
        self.clock = clock
        self.failing_since: float | None = None
        self.last_error = ""
        self.stopped = False
        TASK_FAILING.labels(name).set(0)

    def failed(self, exc: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock()
        self.last_error = describe(exc)
        TASK_FAILING.labels(self.name).set(1)

    def succeeded(self) -> None:
        if self.failing_since is not None:
            self.failing_since = None
            self.last_error = ""
            TASK_FAILING.labels(self.name).set(0)

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else self.clock() - self.failing_since

    async def check(self) -> None:
        """A readiness check: raises while the loop has failed for too long, or ended."""
        if self.stopped:
            raise RuntimeError(f"{self.name} stopped")
        seconds = self.failing_for()
        if seconds > self.not_ready_after_seconds:
            raise RuntimeError(f"{self.name} failing for {seconds:.0f}s: {self.last_error}")


async def supervise(
    run: Callable[[], Coroutine[Any, Any, None]],
    *,
    health: TaskHealth,
    log: logging.Logger,
    backoff: Backoff | None = None,
    healthy_after_seconds: float = 5.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``run`` for ever: when it raises, log, count, wait, and start it again.

    ``run`` is a loop that normally never returns; a return counts as an end and is
    restarted too. It counts as healthy again once it has run ``healthy_after_seconds``
    without raising (a loop has no "success" to report; staying up is one). Once
    ``stop`` is set, a return or an error ends supervision instead (a graceful stop).
    """
    backoff = backoff or Backoff(base_seconds=0.2, cap_seconds=30.0)
    try:
        while True:
            task: asyncio.Task[None] = asyncio.create_task(run(), name=health.name)
            try:
                done, _ = await asyncio.wait({task}, timeout=healthy_after_seconds)
                if not done:
                    backoff.reset()
                    health.succeeded()
                await task
                if stop is not None and stop.is_set():
                    return
                raise RuntimeError("the loop returned")
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                raise
            except Exception as exc:
                if stop is not None and stop.is_set():
                    return
                kind = "transient" if is_transient(exc) else "unexpected"
                TASK_RESTARTS.labels(health.name, kind).inc()
                health.failed(exc)
                delay = backoff.next_delay()
                if kind == "transient":
                    log.warning(
                        "%s interrupted, restarting in %.1fs: %s", health.name, delay, describe(exc)
                    )
                else:
                    log.exception("%s failed, restarting in %.1fs", health.name, delay)
                await asyncio.sleep(delay)
    finally:
        health.stopped = True
