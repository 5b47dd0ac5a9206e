"""Per-connection lanes of the normalize step (services.processor.lanes), on fake events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faust.transport.consumer import Consumer

from services.processor.lanes import Lanes, OrderedAcks


@dataclass(frozen=True)
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(frozen=True)
class FakeEvent:
    message: FakeMessage


def event(offset: int, key: bytes, partition: int = 0) -> FakeEvent:
    return FakeEvent(FakeMessage("webhooks.raw", partition, offset, key))


class Recorder:
    def __init__(self) -> None:
        self.acked: list[tuple[int, int]] = []

    async def ack(self, e: Any) -> bool:
        self.acked.append((e.message.partition, e.message.offset))
        return True


async def test_acknowledges_each_partition_in_offset_order_whatever_order_events_finish() -> None:
    recorder = Recorder()
    acks = OrderedAcks(recorder.ack)
    events = [event(0, b"a"), event(1, b"b"), event(0, b"c", partition=1), event(2, b"b")]
    for e in events:
        acks.track(e)
    assert await acks.done(events[1]) == 0  # offset 0 of partition 0 is not done yet
    assert await acks.done(events[2]) == 1  # partition 1 goes on alone
    assert await acks.done(events[0]) == 2
    assert recorder.acked == [(1, 0), (0, 0), (0, 1)]
    assert acks.unfinished() == [events[3]]
    assert await acks.done(events[3]) == 1
    assert len(acks) == 0


async def stream_of(events: Sequence[Any], then: asyncio.Event) -> AsyncIterator[Any]:
    for e in events:
        yield e
    await then.wait()


async def test_a_lane_waiting_on_its_provider_holds_up_no_other_lane_and_no_offset_past_it() -> (
    None
):
    recorder = Recorder()
    acks = OrderedAcks(recorder.ack)
    release_slow = asyncio.Event()
    handled: list[tuple[bytes, list[int]]] = []

    async def handle(batch: Sequence[Any]) -> None:
        key = batch[0].message.key
        if key == b"slow":
            await release_slow.wait()
        handled.append((key, [e.message.offset for e in batch]))

    lanes = Lanes(handle, acks, max_batch=10, in_flight=100)
    events = [event(0, b"fast"), event(1, b"slow"), event(2, b"slow")]
    events += [event(n, b"fast") for n in range(3, 8)]
    end = asyncio.Event()
    running = asyncio.create_task(lanes.run(stream_of(events, end)))
    for _ in range(100):
        await asyncio.sleep(0)
    fast = [offset for key, batch in handled if key == b"fast" for offset in batch]
    assert fast == [0, 3, 4, 5, 6, 7]  # every fast one, in order, while slow waits
    assert all(key == b"fast" for key, _ in handled)
    # Offsets behind the waiting one stay unacknowledged: Kafka would hand them out again.
    assert recorder.acked == [(0, 0)]
    release_slow.set()
    for _ in range(100):
        await asyncio.sleep(0)
    assert (b"slow", [1, 2]) in handled
    assert recorder.acked == [(0, n) for n in range(8)]
    assert lanes.active == 0  # idle lanes end
    running.cancel()
    end.set()


async def test_stops_taking_events_while_it_holds_its_bound() -> None:
    recorder = Recorder()
    acks = OrderedAcks(recorder.ack)
    release = asyncio.Event()

    async def handle(batch: Sequence[Any]) -> None:
        await release.wait()

    taken: list[int] = []

    async def counted() -> AsyncIterator[Any]:
        for n in range(10):
            taken.append(n)
            yield event(n, f"k{n}".encode())
        await asyncio.Event().wait()

    lanes = Lanes(handle, acks, max_batch=10, in_flight=3)
    running = asyncio.create_task(lanes.run(counted()))
    for _ in range(50):
        await asyncio.sleep(0)
    assert len(acks) == 3
    assert taken == [0, 1, 2, 3]  # the fourth is taken from the stream, not dispatched
    release.set()
    for _ in range(200):
        await asyncio.sleep(0)
    assert recorder.acked == [(0, n) for n in range(10)]
    running.cancel()


async def test_a_failing_lane_fails_the_dispatcher_and_leaves_its_events_unacknowledged() -> None:
    recorder = Recorder()
    acks = OrderedAcks(recorder.ack)

    async def handle(batch: Sequence[Any]) -> None:
        raise RuntimeError("bug")

    lanes = Lanes(handle, acks, max_batch=10, in_flight=100)
    try:
        await asyncio.wait_for(lanes.run(stream_of([event(0, b"a")], asyncio.Event())), 5)
    except* RuntimeError:
        pass
    else:
        raise AssertionError("the lane's error did not reach the dispatcher")
    assert recorder.acked == []
    assert len(acks.unfinished()) == 1


def test_faust_commits_past_a_lone_unacknowledged_offset_so_acks_must_come_in_order() -> None:
    """Why OrderedAcks exists: faust-streaming 0.15 computes the offset to commit from the
    acknowledged ones, and with offset 10 unacknowledged (committed: 10, the next to read)
    and 11, 12 acknowledged, it commits 13. When this fails, faust fixed it upstream."""
    tp = "webhooks.raw-0"
    consumer = SimpleNamespace(
        _acked={tp: [11, 12]},
        _acked_index={tp: {11, 12}},
        _gap={tp: []},  # no gaps (compacted offsets)
        _committed_offset={tp: 10},
    )
    assert Consumer._new_offset(consumer, tp) == 13
