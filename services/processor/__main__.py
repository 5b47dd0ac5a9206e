"""``python -m services.processor``: the composition root, a faust worker."""

from __future__ import annotations

import asyncio
import gc

import faust

from crmsync.common.logs import configure_logging
from crmsync.common.settings import exit_on_config_error, load_settings, topic_name
from crmsync.settings.processor import ProcessorSettings
from services.processor.app import SOURCE_TOPICS, create_app
from services.processor.housekeeping import check_dedup_retention

# The young generation's threshold (CPython's default is 700 allocations). A batch of
# changes allocates hundreds of objects per change (dicts, dataclasses, pydantic models),
# so at 700 the young generation was collected every few changes, and each tenth
# and hundredth collection walked every module and faust object too: the collector had
# 7.7 % of the processor's samples while it drained 100,000 changes (py-spy --native;
# bench/README.md, "Processor CPU per event").
GC_YOUNG_THRESHOLD = 20_000


def quiet_collector() -> None:
    """Move everything start-up made (modules, faust's app, pydantic's validators) out of
    the collector's reach, and collect the young generation less often. Cycles are still
    collected; only objects that live for the whole process are no longer re-walked."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def main() -> None:
    settings = load_settings(ProcessorSettings)
    configure_logging("processor", settings.log_level, settings.log_format)
    with exit_on_config_error():
        asyncio.run(
            check_dedup_retention(
                settings.processor_dedup_retention_days,
                settings.kafka_bootstrap_servers,
                [topic_name(settings, t.name) for t in SOURCE_TOPICS],
                within_seconds=settings.processor_kafka_start_timeout_seconds,
            )
        )
        app = create_app(settings)
    quiet_collector()
    # override_logging=False keeps our structured logging instead of mode's; the spinner
    # (which faust only drops when it sets up logging itself) would garble JSON lines.
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
