"""``python -m services.processor``: the composition root, a faust worker."""

from __future__ import annotations

import faust

from crmsync.common.logs import configure_logging
from crmsync.common.settings import load_settings
from services.processor.app import create_app
from services.processor.settings import ProcessorSettings


def main() -> None:
    settings = load_settings(ProcessorSettings)
    configure_logging("processor", settings.log_level, settings.log_format)
    app = create_app(settings)
    # override_logging=False keeps our structured logging instead of mode's; the spinner
    # (which faust only drops when it sets up logging itself) would garble JSON lines.
    worker = faust.Worker(app, loglevel=settings.log_level, override_logging=False, quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
