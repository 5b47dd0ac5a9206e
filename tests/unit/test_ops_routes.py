from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import crmsync.common.web as web_module
from crmsync.common.web import add_ops_routes


async def _ok() -> None:
    return None


async def _broken() -> None:
    raise ConnectionRefusedError("nobody home")


async def _hangs() -> None:
    await asyncio.sleep(3600)


async def _client(checks: dict[str, object]) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    add_ops_routes(app, "test", checks)  # type: ignore[arg-type]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_readyz_is_200_when_every_check_passes() -> None:
    client = await _client({"kafka": _ok, "postgres": _ok})
    try:
        resp = await client.get("/readyz")
        assert resp.status == 200
        assert (await resp.json())["checks"] == {"kafka": "ok", "postgres": "ok"}
    finally:
        await client.close()


async def test_readyz_is_503_and_names_the_failing_check() -> None:
    client = await _client({"kafka": _ok, "postgres": _broken})
    try:
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503
        assert body["checks"]["kafka"] == "ok"
        assert "nobody home" in body["checks"]["postgres"]
    finally:
        await client.close()


async def test_readyz_does_not_hang_on_a_stuck_dependency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(web_module, "CHECK_TIMEOUT_SECONDS", 0.05)
    client = await _client({"postgres": _hangs})
    try:
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert "timed out" in (await resp.json())["checks"]["postgres"]
    finally:
        await client.close()


async def test_healthz_and_metrics_answer_without_dependencies() -> None:
    client = await _client({"postgres": _broken})
    try:
        assert (await client.get("/healthz")).status == 200
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        assert "python_info" in await metrics.text()
    finally:
        await client.close()
