"""The processor's Kafka clients wait where they are meant to, checked on the clients
themselves, started against the real Kafka, so an upgrade of faust or aiokafka that moves
a wait fails here instead of ignoring it:

- the worker consumer waits ``processor_fetch_max_wait_ms`` per fetch, which faust 0.15
  writes into its driver (services/processor/consumer.py makes it a setting);
- the producer of the normalize lanes and the outbox relay sends a batch at once, with no
  linger (services/processor/app.py, ``BATCH_LINGER_MS``)."""

from __future__ import annotations

from pathlib import Path

from crmsync.settings.processor import ProcessorSettings
from services.processor.app import batch_producer, create_app
from tests.conftest import started


async def test_the_worker_consumer_fetches_with_the_configured_wait(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = ProcessorSettings(
        kafka_bootstrap_servers=kafka_bootstrap,
        processor_data_dir=tmp_path,
        processor_fetch_max_wait_ms=37,
    )
    app = create_app(settings)
    thread = app.consumer._thread  # the consumer thread faust made, our subclass
    assert type(thread).__module__ == "services.processor.consumer"
    consumer = thread._create_worker_consumer(app.transport)
    await consumer.start()
    try:
        # The fetcher is what puts the wait into every FetchRequest (aiokafka 0.14).
        assert consumer._fetcher._fetch_max_wait_ms == 37
    finally:
        await consumer.stop()
        thread.thread_loop.close()  # made by mode's ServiceThread, never started here


async def test_the_batch_producer_sends_without_lingering(kafka_bootstrap: str) -> None:
    async with started(batch_producer(kafka_bootstrap)) as producer:
        # Where aiokafka 0.14 holds a batch back before its sender takes it (seconds).
        assert producer._message_accumulator._linger_time == 0
