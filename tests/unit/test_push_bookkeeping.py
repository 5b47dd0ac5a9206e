"""How many round trips a push's bookkeeping costs (issue 18): a fake connection counts them.

Each round trip waits for PostgreSQL to be scheduled, and at 200 pushes/s on two cores
that wait is most of a push's time (bench/README.md, "Ninth round"). What the statement
does (atomic, the link's row before the job's) is proven against PostgreSQL in
tests/integration/test_outbound.py."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import asyncpg

from connectors.runtime import Clients, ConnectionInfo
from crmsync.common.pushes import Job
from services.outbound.pusher import Pusher, PushPolicy


class _Conn:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        self.calls.append("BEGIN")
        yield
        self.calls.append("COMMIT")

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._transaction()

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append("execute")
        return ""

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.calls.append("fetchval")
        return None


class _Pool:
    def __init__(self, conn: _Conn) -> None:
        self.conn = conn

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Conn]:
        yield self.conn


async def test_a_push_s_bookkeeping_is_one_round_trip() -> None:
    conn = _Conn()
    pusher = Pusher(cast(asyncpg.Pool, _Pool(conn)), cast(Clients, None), PushPolicy())
    tenant, connection = uuid.uuid4(), uuid.uuid4()
    job = Job(
        id=1, tenant_id=tenant, connection_id=connection, entity_type="customer",
        entity_id=uuid.uuid4(), version=3, change_id=None,
        committed_at=datetime.now(UTC), attempts=0,
    )  # fmt: skip
    info = cast(ConnectionInfo, SimpleNamespace(id=connection, provider="ascora"))
    rearmed = await pusher._remember(
        info=info, job=job, external_id="42", version=3, remote=None, pushed={}
    )
    assert rearmed is False
    # Before: BEGIN, the link, the log and finish, COMMIT: four round trips.
    assert conn.calls == ["fetchval"]
