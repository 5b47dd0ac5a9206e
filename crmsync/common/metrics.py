"""Prometheus helpers every service uses: build info and the ``/metrics`` handler."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Info,
    generate_latest,
)

import crmsync

_BUILD_INFO = Info("crmsync_build", "crmsync build and service identity.")


def set_build_info(service: str) -> None:
    _BUILD_INFO.info({"version": crmsync.__version__, "service": service})


def metrics_handler(registry: CollectorRegistry = REGISTRY) -> Handler:
    async def handle(_request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return handle
