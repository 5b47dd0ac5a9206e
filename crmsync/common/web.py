"""Operational HTTP routes every service serves: liveness, readiness, metrics.

``/healthz`` answers while the process runs; ``/readyz`` runs the service's dependency
checks (Kafka, Postgres) and answers 503 with the failing ones named, so a load balancer
or ``crmsync run`` can tell "up but cannot work" from "working".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from crmsync.common.metrics import metrics_handler

ReadinessCheck = Callable[[], Awaitable[None]]

# A readiness probe must answer well inside a load balancer's usual 5 s probe timeout.
CHECK_TIMEOUT_SECONDS = 3.0


async def run_checks(checks: Mapping[str, ReadinessCheck]) -> dict[str, str]:
    async def one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"timed out after {CHECK_TIMEOUT_SECONDS:g}s"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported as text
            return f"{type(exc).__name__}: {exc}"
        return "ok"

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    return dict(zip(checks, results, strict=True))


def add_ops_routes(
    app: web.Application, service: str, checks: Mapping[str, ReadinessCheck]
) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": service})

    async def readyz(_request: web.Request) -> web.Response:
        results = await run_checks(checks)
        ok = all(v == "ok" for v in results.values())
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "service": service, "checks": results},
            status=200 if ok else 503,
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler())
