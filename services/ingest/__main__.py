"""``python -m services.ingest``: the composition root."""

from __future__ import annotations

from crmsync.common.runner import run_service
from crmsync.common.settings import load_settings
from crmsync.settings.ingest import IngestSettings
from services.ingest.app import SERVICE, create_app


def main() -> None:
    settings = load_settings(IngestSettings)
    run_service(SERVICE, settings, create_app)


if __name__ == "__main__":
    main()
