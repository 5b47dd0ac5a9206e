"""One lane per connection on ``webhooks.raw``: a connection whose hydrations wait never
holds up another connection's webhooks.

Normalising a thin webhook fetches its record through the provider's API, within the
connection's budget (Xero: 55 calls a minute, burst 5, shared with our pushes). When the
normalize agent handled whole batches, a batch waited for its slowest hydration, and
every later batch behind it: the demo's Ascora and Stripe webhooks waited up to 3 s
behind Xero's budget (head-of-line blocking, issue 18).

Here each Kafka key (ingest keys ``webhooks.raw`` by connection) has a lane: a task that
normalises its envelopes in order, a batch of what queued up at a time, while the other
lanes go on. One connection's envelopes stay in their order, as before.

Offsets are committed only behind finished work. faust commits a partition up to its
first unacknowledged offset, but only when acknowledgements come in offset order: with
one unacknowledged record at the head of what it has acknowledged, faust-streaming
0.15's ``Consumer._new_offset`` commits past it (it compares the first acknowledged
offset with the committed one as if that were the last consumed, off by one; and does
not compare at all before the group's first commit). So ``OrderedAcks`` holds a finished
envelope back until every earlier one of its partition finished, and acknowledges them
in order. A crash loses nothing: Kafka hands out again everything from the first
unfinished envelope, and what had gone through is dropped as a duplicate (normalize
skips what ``processed_events`` holds; apply deduplicates the rest).

What lanes hold is bounded (``in_flight``): finished envelopes held back behind a slow
one count, so a connection that waits long enough stops the intake, as a full batch did,
only later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Lane of the records with no key (ingest always sets one): they share one lane.
NO_KEY = b""


@dataclass
class _Held:
    event: Any
    done: bool = False


class OrderedAcks:
    """Acknowledges events in the order they were received, per partition, each once it
    and every one before it on its partition is done."""

    def __init__(self, ack: Callable[[Any], Awaitable[Any]]) -> None:
        self._ack = ack
        self._held: dict[tuple[str, int], deque[_Held]] = {}
        self._of: dict[int, _Held] = {}

    def __len__(self) -> int:
        return len(self._of)

    def track(self, event: Any) -> None:
        held = _Held(event)
        m = event.message
        self._held.setdefault((m.topic, m.partition), deque()).append(held)
        self._of[id(event)] = held

    async def done(self, event: Any) -> int:
        """Mark ``event`` done; acknowledge what is now done at the head of its
        partition. Returns how many were acknowledged."""
        self._of[id(event)].done = True
        m = event.message
        queue = self._held[(m.topic, m.partition)]
        acked = 0
        while queue and queue[0].done:
            held = queue.popleft()
            del self._of[id(held.event)]
            await self._ack(held.event)
            acked += 1
        return acked

    def unfinished(self) -> list[Any]:
        return [h.event for q in self._held.values() for h in q]


@dataclass
class _Lane:
    queue: deque[Any] = field(default_factory=deque)


class Lanes:
    """Dispatches a stream's events to one lane per key; ``handle`` gets each lane's
    events in order, up to ``max_batch`` at a time, and must return only once they are
    accounted for (the agent's BatchGuard). At most ``in_flight`` events are held."""

    def __init__(
        self,
        handle: Callable[[Sequence[Any]], Awaitable[None]],
        acks: OrderedAcks,
        *,
        max_batch: int,
        in_flight: int,
    ) -> None:
        self.handle = handle
        self.acks = acks
        self.max_batch = max_batch
        self.in_flight = in_flight
        self._lanes: dict[bytes, _Lane] = {}
        self._room = asyncio.Event()
        self._room.set()

    @property
    def active(self) -> int:
        return len(self._lanes)

    async def run(self, events: AsyncIterable[Any]) -> None:
        """Dispatch ``events`` until they end or this is cancelled; a lane that fails
        fails this (its events stay unacknowledged)."""
        async with asyncio.TaskGroup() as tasks:
            async for event in events:
                while len(self.acks) >= self.in_flight:
                    self._room.clear()
                    await self._room.wait()
                self.acks.track(event)
                key = event.message.key or NO_KEY
                lane = self._lanes.get(key)
                if lane is None:
                    lane = self._lanes[key] = _Lane()
                    tasks.create_task(self._drive(key, lane), name="normalize-lane")
                lane.queue.append(event)

    async def _drive(self, key: bytes, lane: _Lane) -> None:
        while True:
            if not lane.queue:
                # Idle: the lane ends (a connection that sends again gets a new one).
                # Nothing awaits between this test and the removal, so no event is
                # queued onto a lane that has ended.
                del self._lanes[key]
                return
            batch = [lane.queue.popleft() for _ in range(min(self.max_batch, len(lane.queue)))]
            await self.handle(batch)
            for event in batch:
                await self.acks.done(event)
            if len(self.acks) < self.in_flight:
                self._room.set()
            # Let the dispatcher queue what came meanwhile, so the next batch takes it.
            await asyncio.sleep(0)


@contextlib.contextmanager
def forgetting_unfinished(stream: Any, acks: OrderedAcks) -> Any:
    """On leaving (stop, crash), stop faust from waiting for events that no lane will
    finish: their offsets stay uncommitted, and the partition's next owner (or this
    worker after a restart) receives them again."""
    try:
        yield
    finally:
        waiting = getattr(getattr(stream.app, "consumer", None), "_unacked_messages", None)
        if waiting is not None:
            for event in acks.unfinished():
                waiting.discard(event.message)
