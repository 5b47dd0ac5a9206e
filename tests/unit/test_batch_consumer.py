"""The processor's consumer delivers a fetch in one task and gives it up as faust does.

``BatchDeliveringConsumer`` copies faust's fetch loop (``Consumer._drain_messages``) and
changes where each fetch is delivered; these tests hold the copy to faust's behaviour
without Kafka (the fault scenarios and the integration tests run it against the broker).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import inspect
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import mode
import pytest
from faust.transport.consumer import Consumer as FaustConsumer

from services.processor.consumer import BatchDeliveringConsumer

# sha256 of faust-streaming 0.15.3's Consumer._drain_messages, which consumer.py copies.
FAUST_DRAIN_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes = b"k"
    value: bytes = b"v"

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)


@dataclass
class Fetcher:
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)


class Stand(mode.Service):  # type: ignore[misc]
    """What ``_drain_messages`` and ``_deliver`` use of a faust consumer, fetches scripted."""

    _drain_messages = BatchDeliveringConsumer._drain_messages
    _deliver = BatchDeliveringConsumer._deliver
    consumer_stopped_errors: tuple[type[BaseException], ...] = ()

    def __init__(
        self,
        fetches: list[list[Record]],
        callback: Callable[[Record], Any],
        *,
        commit_every: int | None = None,
        read_offset: dict[tuple[str, int], int | None] | None = None,
    ) -> None:
        super().__init__()
        self.fetches = fetches
        self.callback = callback
        self.suspend_flow = asyncio.Event()
        self.fetched = asyncio.Event()  # every scripted fetch was handed out
        self._read_offset: dict[tuple[str, int], int | None] = read_offset or {}
        self._commit_every = commit_every
        self._n_acked = 0
        self.commits = 0
        self.gaps: list[tuple[tuple[str, int], int, int]] = []
        self.diag = SimpleNamespace(set_flag=lambda _: None, unset_flag=lambda _: None)
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda _: True))
        self.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))

    async def getmany(
        self,
        timeout: float,  # noqa: ASYNC109 - faust's signature
    ) -> AsyncIterator[tuple[tuple[str, int], Record]]:
        if not self.fetches:
            self.fetched.set()
            await asyncio.sleep(timeout / 100)
            return
        for record in self.fetches.pop(0):
            yield record.tp, record

    async def commit(self) -> None:
        self.commits += 1

    async def _add_gap(self, tp: tuple[str, int], start: int, end: int) -> None:
        self.gaps.append((tp, start, end))


async def drain(stand: Stand) -> None:
    fetcher = Fetcher()
    task = asyncio.create_task(stand._drain_messages(fetcher))
    await asyncio.wait_for(stand.fetched.wait(), 5)
    fetcher._stopped.set()
    await asyncio.wait_for(task, 5)


def test_faust_fetch_loop_is_the_one_copied() -> None:
    # A faust upgrade that changes its loop must be looked at against consumer.py's copy.
    source = inspect.getsource(FaustConsumer._drain_messages)
    assert hashlib.sha256(source.encode()).hexdigest() == FAUST_DRAIN_SHA256


async def test_each_fetch_is_delivered_in_order_with_faust_bookkeeping() -> None:
    delivered: list[Record] = []

    async def callback(record: Record) -> None:
        delivered.append(record)

    tp = ("t", 0)
    fetches = [
        [Record("t", 0, 3), Record("t", 0, 4), Record("t", 1, 0)],
        # offset 2 is behind the read offset (a fetch repeated): dropped, as faust does;
        # 8 after 4 leaves a gap faust records for acknowledgement.
        [Record("t", 0, 2), Record("t", 0, 8)],
    ]
    stand = Stand(fetches, callback, read_offset={tp: 3, ("t", 1): None})

    await drain(stand)

    assert [(r.partition, r.offset) for r in delivered] == [(0, 3), (0, 4), (1, 0), (0, 8)]
    assert stand._read_offset == {tp: 8, ("t", 1): 0}
    assert stand.gaps == [(tp, 5, 8)]


async def test_commits_every_n_acknowledgements_as_faust_does() -> None:
    stand: Stand

    async def callback(record: Record) -> None:
        stand._n_acked += 1

    stand = Stand(
        [[Record("t", 0, i) for i in range(5)]],
        callback,
        commit_every=2,
        read_offset={("t", 0): None},
    )

    await drain(stand)

    # Checked before each record: after the 2nd and the 4th acknowledgement.
    assert stand.commits == 2


async def test_a_suspended_flow_gives_up_the_rest_of_the_fetch() -> None:
    """A rebalance suspends the flow while a record's delivery waits (its queue full): that
    delivery is cancelled and the fetch's later records are not delivered; the read offset
    stays at the last record delivered, so nothing is skipped when they come again."""
    delivered: list[int] = []
    blocked = asyncio.Event()
    never = asyncio.Event()
    stand: Stand

    async def callback(record: Record) -> None:
        if record.offset == 1:
            blocked.set()
            await never.wait()
        delivered.append(record.offset)

    stand = Stand(
        [[Record("t", 0, i) for i in range(5)], [Record("t", 0, 1), Record("t", 0, 2)]],
        callback,
        read_offset={("t", 0): None},
    )
    fetcher = Fetcher()
    task = asyncio.create_task(stand._drain_messages(fetcher))
    await asyncio.wait_for(blocked.wait(), 5)
    stand.suspend_flow.set()
    stand.callback = _collect(delivered)  # after the rebalance, the records come again
    await asyncio.sleep(0)
    stand.suspend_flow.clear()
    await asyncio.wait_for(stand.fetched.wait(), 5)
    fetcher._stopped.set()
    await asyncio.wait_for(task, 5)

    assert delivered == [0, 1, 2]
    assert stand._read_offset == {("t", 0): 2}


def _collect(into: list[int]) -> Callable[[Record], Any]:
    async def callback(record: Record) -> None:
        into.append(record.offset)

    return callback


async def test_a_failing_delivery_stops_the_loop_with_its_error() -> None:
    async def callback(record: Record) -> None:
        raise RuntimeError("channel broke")

    stand = Stand([[Record("t", 0, 0)]], callback, read_offset={("t", 0): None})

    with pytest.raises(RuntimeError, match="channel broke"):
        await asyncio.wait_for(stand._drain_messages(Fetcher()), 5)
    assert stand._read_offset == {("t", 0): None}


def test_the_processor_app_consumes_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from crmsync.settings.processor import ProcessorSettings  # noqa: PLC0415
    from services.processor.app import create_app  # noqa: PLC0415

    monkeypatch.setenv("CRMSYNC_MASTER_KEYS", "k1:" + base64.b64encode(os.urandom(32)).decode())
    app = create_app(ProcessorSettings())

    assert app.transport.Consumer is BatchDeliveringConsumer
