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
from typing import Any

from services.processor.batches import take_batches
from tests.e2e.faust_probe import probe, work


def main() -> None:
    app, topic, out = probe("faust-crash-probe")
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
        with out.open("a") as f:
            f.write("".join(f"{v}\n" for v in values))

    work(app)


if __name__ == "__main__":
    main()
