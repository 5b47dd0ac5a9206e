"""``python -m services.ingest``: the composition root."""

from __future__ import annotations

from crmsync.common.logs import configure_logging
from crmsync.common.runner import run
from crmsync.common.settings import load_settings
from crmsync.settings.ingest import IngestSettings
from services.ingest.app import SERVICE, create_app


def main() -> None:
    settings = load_settings(IngestSettings)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    run(create_app(settings), settings.ingest_host, settings.ingest_port, SERVICE)


if __name__ == "__main__":
    main()
