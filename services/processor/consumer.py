"""faust's aiokafka consumer, handing each fetched batch over in one task, not a task per record.

faust 0.15's ``Consumer._drain_messages`` delivers every record through
``Service.wait_first(callback(message), self.suspend_flow.wait())``: four tasks (the
delivery, the flow's suspension, the consumer's stop and crash), an ``asyncio.wait`` and
three cancellations per record, so that a rebalance can cut a delivery short. In the
processor's bulk drain that race was 6.6 % of the samples (py-spy; ``bench/README.md``,
"Seventh round"), as much as decoding and queueing the records.

:class:`BatchDeliveringConsumer` keeps faust's loop and changes only the unit of that race:
the records of one fetch are delivered one after another inside a single task, and that
task races the same three events once. Everything else is faust's own: the fetch
(``getmany``, which itself stops yielding when the flow stops or the group's generation
changes), the gap and commit bookkeeping per record, the conductor's callback (decoding,
flow control, the channels' queues and their back-pressure), acknowledgement and commit.

When the flow is suspended (a rebalance) or the consumer stops or crashes, the task is
cancelled at the record it is delivering, as faust cancels that record's delivery; the
records after it are not delivered, as faust's ``getmany`` stops yielding them. One
difference, on the safe side: faust moved its read offset past every record it gave up
on; here the read offset stays at the last record delivered. Nothing is acknowledged by
delivery either way; the next owner of the partition starts at the committed offset.

It is installed with faust's public ``App.transport`` setter (:func:`install`), and
``tests/unit/test_batch_consumer.py`` holds the copied loop to faust's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, ClassVar

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

# faust's own: a fetch loop yields to the event loop every this many records.
YIELD_EVERY = 100


class FetchWaitConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """faust's consumer thread, whose aiokafka consumer waits at most the transport's
    ``fetch_max_wait_ms`` per fetch: faust 0.15 writes 1,500 ms into
    ``_create_worker_consumer`` and no setting reaches it.

    aiokafka keeps one fetch in flight per broker and leaves out of it every partition
    still holding records the agents have not taken (``Fetcher._get_actions_per_node``),
    so a record landing on such a partition waits for the long poll already in flight.
    The setting (``CRMSYNC_PROCESSOR_FETCH_MAX_WAIT_MS``) keeps faust's 1,500 ms as its
    default: 100 ms lowered the p50 at 200 webhooks/s but raised the p99 (bench/README.md,
    "Seventh round"). Only the one attribute aiokafka reads when ``start()`` builds its
    fetcher is set; ``tests/integration/test_processor_transport.py`` fails if an upgrade
    moves it.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class BatchDeliveringConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> FetchWaitConsumerThread:
        return FetchWaitConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        # faust's Consumer._drain_messages (0.15), but for where each fetch is delivered.
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records: AsyncGenerator[tuple[Any, Any], None] = getmany(timeout=1.0)
                # faust: getmany can return at once, again and again, never yielding.
                await self.sleep(0)
                if not self.should_stop:
                    # The fetch itself stays outside the race, as in faust.
                    first = await anext(records, None)
                    if first is not None:
                        await self.wait_first(
                            self._deliver(first, records), self.suspend_flow.wait()
                        )
                    await records.aclose()
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, first: tuple[Any, Any], rest: AsyncIterator[tuple[Any, Any]]) -> None:
        """Deliver one fetch's records in order, with faust's bookkeeping for each."""
        callback = self.callback
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        item: tuple[Any, Any] | None = first
        while item is not None:
            tp, message = item
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            r_offset = get_read_offset(tp)
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                # A gap in the offsets (compaction, transaction markers): faust's record.
                if gap > 1 and r_offset and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                # faust's count of acknowledgements since its last commit (untyped there).
                acked = self._n_acked  # type: ignore[has-type]
                if commit_every is not None and acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                await callback(message)
                set_read_offset(tp, offset)
            else:
                self.log.dev(
                    "DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value
                )
            item = await anext(rest, None)


class BatchDeliveringTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer: ClassVar[type] = BatchDeliveringConsumer
    # faust's own value until install() sets the processor's.
    fetch_max_wait_ms: int = 1_500


def install(app: faust.App, *, fetch_max_wait_ms: int) -> None:
    """Make ``app`` consume with :class:`BatchDeliveringConsumer`, whose Kafka fetches wait
    at most ``fetch_max_wait_ms``: call it before the app's consumer exists (right after
    ``faust.App(...)``)."""
    transport = BatchDeliveringTransport(app.conf.broker_consumer, app)
    transport.fetch_max_wait_ms = fetch_max_wait_ms
    app.transport = transport
