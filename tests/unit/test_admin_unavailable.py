"""The admin API answers 503 (try again) whenever PostgreSQL is away, however asyncpg
spells it, and 500 only for what is a bug."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.admin.api import problems_middleware


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        # A restart: `pg_ctl restart` under load raised each of these at some request.
        (asyncpg.CannotConnectNowError("the database system is shutting down"), 503),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), 503),
        (asyncpg.exceptions.InternalClientError("cannot switch to state 15"), 503),
        (ConnectionRefusedError(111, "refused"), 503),
        (KeyError("a bug"), 500),
    ],
)
async def test_an_outage_is_503_with_retry_after_and_a_bug_is_500(
    exc: Exception, status: int
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[problems_middleware])
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/")
        assert resp.status == status
        assert resp.content_type == "application/problem+json"
        body = await resp.json()
        assert body["status"] == status
        if status == 503:
            assert resp.headers["Retry-After"] == "5"
