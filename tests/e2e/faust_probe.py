"""A processor worker with one batching agent, run as a process by test_processor_worker.

It proves what the processor stands on: the processor's app factory, faust-streaming and
aiokafka against the pinned Kafka version, batching with ``stream.take``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import faust

from crmsync.common.logs import configure_logging
from crmsync.settings.processor import ProcessorSettings
from services.processor.app import create_app


def probe(name: str) -> tuple[faust.App, faust.TopicT, Path]:
    """The processor's app (settings from the environment), logging as ``name``; the
    probe's topic (PROBE_TOPIC, raw values) and the file it reports to (PROBE_OUT)."""
    settings = ProcessorSettings()
    configure_logging(name, "WARNING", "json")
    app = create_app(settings)
    return (
        app,
        app.topic(os.environ["PROBE_TOPIC"], value_serializer="raw"),
        Path(os.environ["PROBE_OUT"]),
    )


def work(app: faust.App) -> None:
    """Run ``app`` as a quiet faust worker until it is stopped."""
    worker = faust.Worker(app, loglevel="WARNING", override_logging=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


def main() -> None:
    app, topic, out = probe("faust-probe")

    @app.agent(topic)
    async def count(stream: AsyncIterator[list[bytes]]) -> None:
        total = 0
        async for batch in stream.take(100, within=1):  # type: ignore[attr-defined]
            total += len(batch)
            # A few bytes once a batch; the agent's loop is the only writer.
            out.write_text(f"{total}\n")

    work(app)


if __name__ == "__main__":
    main()
