"""``python -m services.outbound``: the composition root."""

from __future__ import annotations

from crmsync.common.runner import run_service
from crmsync.common.settings import load_settings
from crmsync.settings.outbound import OutboundSettings
from services.outbound.app import SERVICE, create_app


def main() -> None:
    settings = load_settings(OutboundSettings)
    run_service(SERVICE, settings, create_app)


if __name__ == "__main__":
    main()
