"""A faust worker whose batching agent fails once on a chosen record, run as a process by
test_processor_batches: proves that a batch the agent did not finish is never
acknowledged (committed), whatever faust does when the agent raises.

PROBE_TAKE=batches uses ``services.processor.batches.take_batches`` (what the processor
uses); PROBE_TAKE=faust uses faust's own ``take_events``, which acknowledges a failed
batch in a ``finally`` (the reason the processor lost 1,015 of 2,000 webhooks).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import faust

from crmsync.common.logs import configure_logging
from crmsync.settings.processor import ProcessorSettings
from services.processor.app import create_app
from services.processor.batches import take_batches


def main() -> None:
    settings = ProcessorSettings()
    configure_logging("faust-crash-probe", "WARNING", "json")
    app = create_app(settings)
    topic = app.topic(os.environ["PROBE_TOPIC"], value_serializer="raw")
    out = Path(os.environ["PROBE_OUT"])
    fail_at = os.environ.get("PROBE_FAIL_AT", "")
    take = os.environ.get("PROBE_TAKE", "batches")
    within = float(os.environ.get("PROBE_WITHIN", "0.2"))
    quiet = float(os.environ["PROBE_QUIET"]) if "PROBE_QUIET" in os.environ else None
    failed = False

    @app.agent(topic)
    async def handle(stream: Any) -> None:
        batches = (
            take_batches(stream, 50, within=within, quiet=quiet)
            if take == "batches"
            else contextlib.aclosing(stream.take_events(50, within=within))
        )
        async with batches as taken:
            async for events in taken:
                await handle_batch(events)

    async def handle_batch(events: Any) -> None:
        nonlocal failed
        values = [e.value.decode() for e in events]
        if fail_at in values and not failed:
            failed = True
            # The agent dies mid-batch, as it did on a PostgreSQL error it did not retry;
            # faust restarts it.
            raise RuntimeError(f"failing on {fail_at}")
        with out.open("a") as f:  # noqa: ASYNC230 - a few bytes per batch, test only
            f.write("".join(f"{v}\n" for v in values))

    worker = faust.Worker(app, loglevel="WARNING", override_logging=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
