"""Subscription handshakes at ingest: a provider's unsigned post carrying the code that
will sign its webhooks (FreshBooks' ``callback.verify``; connectors/generic config
``Verification``).

Ingest cannot verify such a post (nothing is shared before it), so it trusts nothing in
it: it stores the code encrypted for a connection that takes handshakes now, and the
outbound service sends the code back over the connection's authenticated API
(services/outbound/handshakes.py). Only the provider's acceptance makes the code a webhook
secret, added beside the connection's others, never instead of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from connectors.base import WebhookRequest
from connectors.generic.mapping import FOREIGN_ACCOUNT, Handshake, Mapper
from connectors.spec import MappingError
from crmsync.common.connections import ActiveConnection, HandshakeReceipt, receive_handshake
from crmsync.common.crypto import KeyRing
from schemas.errors import RefuseInput

log = logging.getLogger(__name__)

# Unconfirmed handshakes one connection may hold. FreshBooks posts one per callback (one
# per event or event family: clients, invoices, payments) and again on "resend
# verification"; ten leaves room for that while a flood of unsigned posts stores ten rows.
MAX_PENDING_HANDSHAKES = 10
_MAPPER = Mapper()


class HandshakeRefusedError(RefuseInput):
    """A post of the handshake's event that is not a usable handshake (no code, or a value
    that is not a plain token): the sender's request is wrong, whoever sent it."""


class ForeignHandshakeError(HandshakeRefusedError):
    """A well-formed handshake naming another provider account than the connection's own
    (its mapping's ``verification.own`` setting): not this connection's to confirm."""


def handshake_of(conn: ActiveConnection, request: WebhookRequest) -> Handshake | None:
    """The handshake ``request`` is, when ``conn``'s mapping declares one and the body is
    its event; None otherwise (the request is then an unsigned webhook like any other).
    Raises HandshakeRefusedError for a malformed handshake."""
    if conn.provider != "generic":
        return None
    try:
        return _MAPPER.verification(request.body, request.headers, conn.settings)
    except MappingError as exc:
        if exc.reason == "invalid_mapping":
            return None  # the connection's mapping is broken: nothing declares a handshake
        if exc.reason == FOREIGN_ACCOUNT:
            raise ForeignHandshakeError(exc.detail) from None
        raise HandshakeRefusedError(exc.detail) from None


@dataclass(frozen=True)
class HandshakeInbox:
    """Where ingest stores the handshakes it received."""

    pool: asyncpg.Pool
    keyring: KeyRing

    async def receive(self, conn: ActiveConnection, handshake: Handshake) -> HandshakeReceipt:
        async with self.pool.acquire() as db:
            receipt = await receive_handshake(
                db,
                self.keyring,
                conn.id,
                handshake.verifier,
                handshake.values,
                max_pending=MAX_PENDING_HANDSHAKES,
            )
        log.info(
            "webhook handshake %s",
            receipt,
            extra={"tenant": str(conn.tenant_id), "connection": str(conn.id)},
        )
        return receipt
