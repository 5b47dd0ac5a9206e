"""Prometheus helpers every service uses: build info and the ``/metrics`` handler."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Info,
    generate_latest,
)

import crmsync

_BUILD_INFO = Info("crmsync_build", "crmsync build and service identity.")
# Supervised loops and batches (crmsync.common.supervise), in every service.
TASK_RESTARTS = Counter(
    "crmsync_task_restarts_total",
    "Restarts of a supervised loop after an error, by loop and kind (transient: a "
    "dependency was away; unexpected: anything else, a bug until shown otherwise).",
    ["task", "kind"],
)
TASK_FAILING = Gauge(
    "crmsync_task_failing",
    "1 while a supervised loop or a batch is being retried after an error, else 0.",
    ["task"],
)


def set_build_info(service: str) -> None:
    _BUILD_INFO.info({"version": crmsync.__version__, "service": service})


def metrics_handler(registry: CollectorRegistry = REGISTRY) -> Handler:
    async def handle(_request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return handle
