"""Confirming subscription handshakes: the code a provider posted to ingest (FreshBooks'
``callback.verify``; services/ingest/handshakes.py) goes back over the connection's
authenticated API (``GenericClient.confirm``), and once the provider accepted it, it is one
more current webhook secret of the connection.

Here rather than in ingest: this is a provider call with the connection's credentials,
rate limit and breaker, as every other call outbound makes, and a row in Postgres outlives
a restart (a handshake received just before one is still confirmed after it). Each
handshake is claimed with a lease, so several outbound processes confirm each once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from connectors.calls import CallFailedError, attempt
from connectors.generic.client import GenericClient
from connectors.generic.mapping import Handshake
from connectors.runtime import Clients, ConnectionInfo, CredentialsError
from connectors.spec import ApiClient
from crmsync.common.connections import (
    PendingHandshake,
    claim_handshakes,
    confirm_handshake,
    connection_row,
    retry_handshake,
    settle_handshake,
)
from crmsync.common.crypto import KeyRing

log = logging.getLogger(__name__)

# How often due handshakes are looked for: a provider's callback starts delivering within
# about this long of its handshake (FreshBooks itself promises "a few seconds to several
# minutes" for deliveries), at one small indexed query per interval.
POLL_SECONDS = 2.0
# Claimed per look; a handshake is one call, and there are a handful per connection ever.
BATCH = 20
# A claimed handshake is not claimed again for this long unless settled: longer than one
# call can take (connectors.http's timeouts) plus the rate-limit wait below.
LEASE_SECONDS = 120.0
MAX_RATE_WAIT_SECONDS = 30.0
# Tries before a handshake the provider never answered is given up ("failed"): with the
# backoff below, about ten minutes. FreshBooks resends the code when asked, and an operator
# can open a new window (`crmsync connections await-handshake`).
MAX_ATTEMPTS = 8
FIRST_RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 300.0


def retry_delay(attempts: int, retry_after: float | None) -> float:
    """Seconds before the next try after ``attempts`` tries: doubling from 5 s to 5 min,
    never sooner than the provider's Retry-After."""
    backoff = min(FIRST_RETRY_SECONDS * 2.0 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)
    return max(backoff, retry_after or 0.0)


class HandshakeWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        clients: Clients,
        keyring: KeyRing,
        stopping: asyncio.Event,
        *,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.pool = pool
        self.clients = clients
        self.keyring = keyring
        self.stopping = stopping
        self.poll_seconds = poll_seconds

    async def run(self) -> None:
        while not self.stopping.is_set():
            await self.confirm_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.poll_seconds)

    async def confirm_due(self) -> int:
        """Try every handshake due now; how many were tried."""
        claimed = await claim_handshakes(
            self.pool, self.keyring, limit=BATCH, lease_seconds=LEASE_SECONDS
        )
        for handshake in claimed:
            await self._confirm(handshake)
        return len(claimed)

    async def _confirm(self, pending: PendingHandshake) -> None:
        fields = {"tenant": str(pending.tenant_id), "connection": str(pending.connection_id)}
        row = await connection_row(self.pool, pending.connection_id, tenant_id=pending.tenant_id)
        if row is None:
            return  # deleted meanwhile: its handshakes went with it (ON DELETE CASCADE)
        info = ConnectionInfo.from_row(row)
        try:
            handle = await self.clients.get(info)
        except (CredentialsError, ValueError) as exc:
            # No credentials yet (an operator adds them after the connection): tried again.
            await self._again(pending, f"no API client: {exc}", None, fields)
            return
        if not isinstance(handle.client, GenericClient):
            await settle_handshake(
                self.pool, pending.id, "failed", error=f"{info.provider} confirms no handshake"
            )
            return
        handshake = Handshake(verifier=pending.verifier, values=pending.values)

        async def confirm(client: ApiClient) -> None:
            assert isinstance(client, GenericClient)  # noqa: S101 - checked above
            await client.confirm(handshake)

        try:
            await attempt(handle, confirm, max_wait_seconds=MAX_RATE_WAIT_SECONDS)
        except CallFailedError as exc:
            if exc.retryable:
                await self._again(pending, str(exc), exc.retry_after, fields)
                return
            # The provider said no (a code it never issued, a callback it does not know):
            # the code is never a secret.
            log.warning("webhook handshake refused by the provider: %s", exc, extra=fields)
            await settle_handshake(self.pool, pending.id, "refused", error=str(exc))
            return
        async with self.pool.acquire() as conn:
            await confirm_handshake(conn, pending.id)
        log.info("webhook handshake confirmed; its code now verifies webhooks", extra=fields)

    async def _again(
        self,
        pending: PendingHandshake,
        error: str,
        retry_after: float | None,
        fields: dict[str, str],
    ) -> None:
        if pending.attempts >= MAX_ATTEMPTS:
            log.warning("webhook handshake given up: %s", error, extra=fields)
            await settle_handshake(self.pool, pending.id, "failed", error=error)
            return
        await retry_handshake(
            self.pool,
            pending.id,
            after_seconds=retry_delay(pending.attempts, retry_after),
            error=error,
        )
