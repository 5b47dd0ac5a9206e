"""The processor's worker consumer waits ``processor_fetch_max_wait_ms`` per fetch, which
faust 0.15 writes into its driver (services/processor/consumer.py makes it a setting):
checked on the consumer faust itself builds, started against the real Kafka, so an
upgrade of faust or aiokafka that moves the wait fails here instead of ignoring it."""

from __future__ import annotations

from pathlib import Path

from crmsync.settings.processor import ProcessorSettings
from services.processor.app import create_app


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
