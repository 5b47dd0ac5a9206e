"""A connection as connectors.runtime hands it to a call, for unit tests that need one
without a database: its row (``ConnectionInfo``) and its runtime ``Handle``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from connectors.http import StaticAuth
from connectors.limits import AsyncTokenBucket, CircuitBreaker
from connectors.registry import connector
from connectors.runtime import ConnectionInfo, Handle
from connectors.spec import RateLimit


def connection_info(
    provider: str,
    settings: dict[str, Any],
    *,
    base_url: str | None = None,
    credentials_encrypted: str | None = None,
    updated_at: datetime | None = None,
) -> ConnectionInfo:
    """An active connection to ``provider`` named after it, with fresh ids."""
    return ConnectionInfo(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        provider=provider,
        name=provider,
        status="active",
        settings=settings,
        base_url=base_url,
        credentials_encrypted=credentials_encrypted,
        updated_at=updated_at or datetime.now(UTC),
    )


def handle_for(info: ConnectionInfo) -> Handle:
    """The connection's handle for a call that fails before it uses the client: a budget
    that never makes it wait, a closed breaker, one call at a time."""
    return Handle(
        info,
        connector(info.provider),
        client=None,  # type: ignore[arg-type] # the calls these tests make never use it
        auth=StaticAuth.bearer("t"),
        bucket=AsyncTokenBucket(RateLimit(rate=100, per_seconds=1, burst=100)),
        breaker=CircuitBreaker(),
        concurrency=asyncio.Semaphore(1),
    )
