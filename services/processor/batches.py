"""Batches of a faust stream that are acknowledged only once they were handled.

faust's ``Stream.take_events`` acknowledges every event of a batch in a ``finally``: when
the agent raises, or is cancelled (shutdown, a rebalance restarting agents), the batch
counts as done and its offsets are committed although nothing was applied. Measured
with PostgreSQL restarted under load, that lost 1,015 of 2,000 acknowledged webhooks.
``take_batches`` is the same buffering with one difference: the events of a batch are
acknowledged when the consumer asks for the next batch, which it does only after it
finished this one. A batch that was not finished stays unacknowledged, so its offsets
are never committed and Kafka hands it out again (after a restart or a rebalance), where
deduplication drops whatever had gone through.

It uses the same stream internals ``take_events`` uses (faust-streaming 0.15: the
buffering processor, passive draining); ``tests/unit/test_batches.py`` and the fault
tests hold it to that.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from mode.utils.aiter import aiter
from mode.utils.futures import notify


def take_batches(
    stream: Any, max_: int, *, within: float, quiet: float | None = None
) -> contextlib.AbstractAsyncContextManager[AsyncGenerator[Sequence[Any], None]]:
    """Yield up to ``max_`` events at a time; acknowledge a batch only after the consumer
    finished it.

    A batch is handed over when it is full, when no further event came for ``quiet``
    seconds, or ``within`` seconds after its first event, whichever is first. faust's
    ``take_events`` waits out a fixed window from the previous batch instead, which adds
    half the window to every event on a quiet stream (25 ms per hop with 50 ms) while
    the consumer sits idle. Under load the batch still fills: events that arrive while
    one batch is being handled are queued, and drain into the next one with no pause
    between them. ``quiet`` defaults to ``within`` (a fixed window from the first event).

    Use it as ``async with take_batches(...) as batches: async for events in batches``:
    an exception leaving ``async for`` does not close an async generator (its traceback
    keeps it alive), so the context manager closes it at once.
    """
    agen = _take(stream, max_, within, within if quiet is None else min(quiet, within))
    # Stream.on_stop closes the generators registered here, as it does take_events'.
    active = getattr(stream, "_active_agens", None)
    if active is not None:
        active.add(agen)
    return contextlib.aclosing(agen)


async def _take(  # noqa: PLR0915 - faust's take_events, kept whole to compare
    stream: Any, max_: int, within: float, quiet: float
) -> AsyncGenerator[Sequence[Any], None]:
    loop = asyncio.get_running_loop()
    buffer: list[Any] = []
    events: list[Any] = []
    first_at = 0.0  # when the batch being filled got its first event (loop time)
    added = asyncio.Event()  # an event joined the buffer since the filler last looked
    buffer_full = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    enable_acks: bool = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        nonlocal buffer_consuming, first_at
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_batches found no current event")
            if not buffer:
                first_at = loop.time()
            buffer.append(value)
            events.append(event)
            added.set()
            if len(buffer) >= max_:
                buffer_full.set()
                # Not a single event more than max_ per batch.
                buffer_consumed.clear()
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    # Acknowledgement is ours: the stream must not acknowledge as it delivers.
    stream.enable_acks = False
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            if not buffer:
                # Idle: wait for a first event (waking now and then to notice a stop).
                added.clear()
                await stream.wait_for_stopped(added, timeout=within)
                if not buffer:
                    continue
            # Fill while events keep coming: full, quiet, or the window is over. It looks
            # once per `quiet`, not once per event.
            while len(buffer) < max_ and not stream.should_stop:
                left = first_at + within - loop.time()
                if left <= 0:
                    break
                had = len(buffer)
                await stream.wait_for_stopped(buffer_full, timeout=min(quiet, left))
                if len(buffer) == had and _drained(stream):
                    break  # nothing came for `quiet` seconds, and nothing is queued
            if not buffer:
                continue
            # The buffering processor waits while a batch is being handled.
            buffer_consuming = asyncio.get_running_loop().create_future()
            batch = list(events)
            # An exception or a cancellation in the consumer closes this generator here,
            # and the lines below never run: the batch stays unacknowledged.
            yield batch
            buffer.clear()
            events.clear()
            for event in batch:
                await stream.ack(event)
            notify(buffer_consuming)
            buffer_full.clear()
            buffer_consumed.set()
    finally:
        # Closed with a batch unfinished: leave it unacknowledged, but never leave the
        # buffering processor waiting for a batch nobody will finish.
        if buffer_consuming is not None:
            notify(buffer_consuming)
        _forget_unfinished(stream, events)
        buffer_consumed.set()
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)


def _drained(stream: Any) -> bool:
    """Whether the stream's channel holds no event yet to reach the buffer. A busy
    machine can hold the stream back longer than ``quiet`` while a backlog waits in the
    channel's queue: that is no reason to cut the batch short."""
    empty = getattr(stream.channel, "empty", None)
    return bool(empty()) if callable(empty) else True


def _forget_unfinished(stream: Any, events: Sequence[Any]) -> None:
    """Stop the consumer from waiting for events nobody will finish.

    On stop (and before a rebalance) faust waits until every message it handed out is
    acknowledged; a crashed agent's exception keeps its batch alive, so that wait would
    never end and the worker would ignore SIGTERM. The offsets stay unacknowledged: faust
    commits up to the first of them and no further, and the next owner of the partition
    receives them again.
    """
    waiting = getattr(getattr(stream.app, "consumer", None), "_unacked_messages", None)
    if waiting is None:
        return
    for event in events:
        waiting.discard(event.message)
