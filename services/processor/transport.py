"""The processor's faust transport: faust's own aiokafka driver with one wait shortened.

faust-streaming 0.15 builds its worker consumer with ``fetch_max_wait_ms=1500`` written
into ``AIOKafkaConsumerThread._create_worker_consumer`` (no setting reaches it). aiokafka
keeps one fetch in flight per broker and leaves out of it every partition still holding
records the agents have not taken (``Fetcher._get_actions_per_node``). So a record that
lands on such a partition (the apply agent was busy for more than 0.1 s, or the normalize
lane still held the previous webhook) waits for the long poll already in flight, which
the broker holds up to ``fetch_max_wait_ms`` when the partitions in it are quiet: up to
1.5 s at each of the processor's two hops (bench/README.md, "Seventh round").

Everything else is faust's: the consumer is faust's, built by faust, and only the one
attribute aiokafka reads when it builds its fetcher (at ``start()``) is set before that.
``tests/unit/test_processor_transport.py`` fails if an upgrade renames it.
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as driver


class _ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher (aiokafka 0.14).
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(driver.Consumer):  # type: ignore[misc]
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):  # type: ignore[misc]
    Consumer = _Consumer


class App(faust.App):  # type: ignore[misc]
    """``faust.App`` whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> _Transport:
        # faust's own App._new_transport, with the driver named instead of looked up by
        # the broker URL's scheme (kafka:// is faust's aiokafka driver).
        return _Transport(self.conf.broker_consumer, self)
