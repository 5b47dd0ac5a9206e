"""``python -m services.processor``: the composition root, a faust worker."""

from __future__ import annotations

import asyncio
import sys

import faust

from crmsync.common.logs import configure_logging
from crmsync.common.settings import EXIT_CONFIG, ConfigError, load_settings, topic_name
from crmsync.settings.processor import ProcessorSettings
from services.processor.app import SOURCE_TOPICS, create_app
from services.processor.housekeeping import check_dedup_retention


def main() -> None:
    settings = load_settings(ProcessorSettings)
    configure_logging("processor", settings.log_level, settings.log_format)
    try:
        asyncio.run(
            check_dedup_retention(
                settings.processor_dedup_retention_days,
                settings.kafka_bootstrap_servers,
                [topic_name(settings, t.name) for t in SOURCE_TOPICS],
                within_seconds=settings.processor_kafka_start_timeout_seconds,
            )
        )
    except ConfigError as exc:
        print(f"crmsync: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    app = create_app(settings)
    # override_logging=False keeps our structured logging instead of mode's; the spinner
    # (which faust only drops when it sets up logging itself) would garble JSON lines.
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
