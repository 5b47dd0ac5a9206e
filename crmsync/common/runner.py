"""Run an aiohttp service until SIGINT/SIGTERM, then shut down cleanly.

Start-up failures (Kafka or Postgres unreachable after the retry window) exit with status
1 and one log line that says what was unreachable; configuration errors exit 2 before this.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from crmsync.common.db import DatabaseUnavailableError
from crmsync.common.kafka import KafkaUnavailableError
from crmsync.common.logs import configure_logging
from crmsync.common.settings import ServiceSettings, exit_on_config_error

log = logging.getLogger(__name__)

EXIT_UNAVAILABLE = 1

S = TypeVar("S", bound=ServiceSettings)


async def serve(app: web.Application, host: str, port: int, service: str) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("%s listening on http://%s:%d", service, host, port, extra={"url": site.name})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("%s stopping", service)
    finally:
        await runner.cleanup()


def run(app: web.Application, host: str, port: int, service: str) -> None:
    try:
        asyncio.run(serve(app, host, port, service))
    except (KafkaUnavailableError, DatabaseUnavailableError, OSError) as exc:
        log.error("%s cannot start: %s", service, exc)
        raise SystemExit(EXIT_UNAVAILABLE) from None
    log.info("%s stopped", service)


def run_service(service: str, settings: S, create_app: Callable[[S], web.Application]) -> None:
    """An aiohttp service's composition root once its settings are loaded: logging, the
    app (a ConfigError building it exits 2, as a bad variable does), then :func:`run` on
    the settings' address."""
    configure_logging(service, settings.log_level, settings.log_format)
    with exit_on_config_error():
        app = create_app(settings)
    run(app, *settings.address, service)
