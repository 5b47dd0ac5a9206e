"""``python -m services.admin``: the composition root."""

from __future__ import annotations

import sys

from crmsync.common.logs import configure_logging
from crmsync.common.runner import run
from crmsync.common.settings import EXIT_CONFIG, ConfigError, load_settings
from crmsync.settings.admin import AdminSettings
from services.admin.app import SERVICE, create_app


def main() -> None:
    settings = load_settings(AdminSettings)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"crmsync: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    run(app, settings.admin_host, settings.admin_port, SERVICE)


if __name__ == "__main__":
    main()
