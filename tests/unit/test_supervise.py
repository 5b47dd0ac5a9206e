"""Supervised loops never end quietly: restarted after any error, visible while failing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from crmsync.common.faults import Backoff
from crmsync.common.metrics import TASK_RESTARTS
from crmsync.common.supervise import TaskHealth, supervise

log = logging.getLogger("test")


def fast() -> Backoff:
    return Backoff(base_seconds=0.001, cap_seconds=0.002)


async def test_a_loop_that_raises_anything_is_restarted() -> None:
    runs = 0
    recovered = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            # Not an outage: the kind the old outbox relay died of for good.
            raise KeyError("a bug")
        if runs == 2:
            raise ConnectionResetError("an outage")
        recovered.set()
        await asyncio.Event().wait()

    health = TaskHealth("test-loop-restarts")
    before = TASK_RESTARTS.labels("test-loop-restarts", "unexpected")._value.get()
    task = asyncio.create_task(
        supervise(loop, health=health, log=log, backoff=fast(), healthy_after_seconds=0.05)
    )
    await asyncio.wait_for(recovered.wait(), 5)
    assert runs == 3
    assert TASK_RESTARTS.labels("test-loop-restarts", "unexpected")._value.get() == before + 1
    assert health.failing_since is not None  # failing until it has stayed up a while
    await asyncio.sleep(0.1)
    assert health.failing_since is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RuntimeError, match="stopped"):
        await health.check()


async def test_a_loop_that_returns_is_restarted_unless_stopping() -> None:
    runs = 0
    stop = asyncio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            stop.set()

    await asyncio.wait_for(
        supervise(loop, health=TaskHealth("test-returns"), log=log, backoff=fast(), stop=stop), 5
    )
    assert runs == 3


async def test_readiness_fails_only_after_the_loop_failed_for_a_while() -> None:
    now = 100.0
    health = TaskHealth("test-ready", not_ready_after_seconds=30, clock=lambda: now)
    await health.check()
    health.failed(ConnectionRefusedError("postgres"))
    now += 29
    await health.check()
    now += 2
    with pytest.raises(RuntimeError, match=r"test-ready failing for 31s: ConnectionRefusedError"):
        await health.check()
    health.succeeded()
    await health.check()
