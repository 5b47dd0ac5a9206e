"""The push worker is woken as soon as a batch's pushes are rows in Postgres, not after the
consumer's offsets reach Kafka: the commit is a broker round trip that only decides where
a restart resumes, and the push waited for it (issue 18; bench/README.md, "Eighth round")."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from services.outbound import service
from services.outbound.queue import PushRow
from services.outbound.service import Outbound


class _Message:
    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.value = b"{}"


class _SlowCommitConsumer:
    """A consumer port whose offset commit waits until the test lets it go."""

    def __init__(self) -> None:
        self.batches: list[dict[str, list[_Message]]] = [{"records.changed-0": [_Message(7)]}]
        self.committing = asyncio.Event()
        self.let_commit = asyncio.Event()
        self.committed: list[dict[Any, int]] = []

    def assignment(self) -> set[Any]:
        return set()

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[_Message]]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.committing.set()
        await self.let_commit.wait()
        self.committed.append(offsets)


def _outbound(consumer: _SlowCommitConsumer) -> Outbound:
    # Nothing here reaches Postgres, the provider or the pusher: enqueue and the routing
    # are the test's.
    nothing: Any = None
    return Outbound(nothing, consumer, nothing, nothing, concurrency=1, lease_seconds=5)


ROW: PushRow = (
    uuid.uuid4(),
    uuid.uuid4(),
    "customer",
    uuid.uuid4(),
    1,
    uuid.uuid4(),
    datetime(2026, 12, 7, tzinfo=UTC),
)


async def test_the_worker_is_woken_once_the_pushes_are_queued_not_after_the_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[Sequence[PushRow]] = []

    async def enqueue(_pool: Any, rows: Sequence[PushRow]) -> None:
        queued.append(rows)

    monkeypatch.setattr(service, "enqueue", enqueue)
    consumer = _SlowCommitConsumer()
    outbound = _outbound(consumer)

    async def targets(_value: bytes | None, _offset: int) -> list[PushRow]:
        return [ROW]

    monkeypatch.setattr(outbound, "_targets", targets)
    task = asyncio.create_task(outbound.consume())
    try:
        await asyncio.wait_for(consumer.committing.wait(), 5)
        assert queued == [[ROW]]
        assert outbound.wake.is_set(), "the worker waits for Kafka's commit of the offsets"
        consumer.let_commit.set()
        for _ in range(100):
            if consumer.committed:
                break
            await asyncio.sleep(0.01)
        # The offsets still move only after the pushes they imply are rows: exactly those read.
        assert consumer.committed == [{"records.changed-0": 8}]
    finally:
        outbound.stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_batch_that_queues_no_push_wakes_nobody(monkeypatch: pytest.MonkeyPatch) -> None:
    async def enqueue(_pool: Any, _rows: Sequence[PushRow]) -> None:
        return None

    monkeypatch.setattr(service, "enqueue", enqueue)
    consumer = _SlowCommitConsumer()
    consumer.let_commit.set()
    outbound = _outbound(consumer)

    async def no_targets(_value: bytes | None, _offset: int) -> list[PushRow]:
        return []

    monkeypatch.setattr(outbound, "_targets", no_targets)
    task = asyncio.create_task(outbound.consume())
    try:
        for _ in range(100):
            if consumer.committed:
                break
            await asyncio.sleep(0.01)
        assert consumer.committed == [{"records.changed-0": 8}]
        assert not outbound.wake.is_set()
    finally:
        outbound.stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
