"""One tenant pushing from an internal ERP connection to a simulator (Ascora's, mostly):
the set-up the outbound and ledger tests share."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from connectors.runtime import credentials_json
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing
from crmsync.demo import sims
from crmsync.demo.sims import RunningSim
from tests.e2e.sync_harness import SimulatedCrm

# An open NZD invoice of one callout line, with its totals: what the outbound and ledger
# tests push when any invoice will do.
CALLOUT_INVOICE: dict[str, Any] = {
    "number": "INV-100",
    "status": "open",
    "currency": "NZD",
    "lines": [{"description": "Callout", "quantity": "1", "unit_amount": 15000}],
    "subtotal": 15000,
    "tax": 0,
    "total": 15000,
}


async def erp_and_simulator(
    pool: asyncpg.Pool, keyring: KeyRing, crm: RunningSim, name: str
) -> tuple[CreatedConnection, uuid.UUID]:
    """A new tenant's internal "erp" connection, and ``crm`` connected to that tenant as
    ``name`` (as the demo connects it) with its webhooks off: there is no ingest here, the
    test hands over what a webhook would bring. The erp connection and the other's id."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        erp = await create_connection(
            conn, keyring, tenant=tenant, provider="internal", name="erp", webhook_secret=None
        )
    target = await sims.connect(
        pool, keyring, crm, tenant=tenant, name=name, ingest_url="http://127.0.0.1:9"
    )
    crm.sim.webhook_url = None
    return erp, target


async def erp_and_target(
    pool: asyncpg.Pool,
    keyring: KeyRing,
    crm: SimulatedCrm,
    *,
    credentials: str,
    settings: dict[str, Any],
) -> tuple[CreatedConnection, CreatedConnection]:
    """A new tenant's internal "erp" connection and its connection to ``crm`` (a simulator,
    named as its provider) with ``credentials`` (``credentials_json``) and ``settings``."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        erp = await create_connection(
            conn, keyring, tenant=tenant, provider="internal", name="erp", webhook_secret=None
        )
        target = await create_connection(
            conn,
            keyring,
            tenant=tenant,
            provider=crm.provider,
            name=crm.provider,
            webhook_secret=None,
            base_url=crm.base_url,
            api_credentials=credentials,
            settings=settings,
        )
    return erp, target


async def erp_and_ascora(
    pool: asyncpg.Pool, keyring: KeyRing, crm: SimulatedCrm, company_code: str
) -> tuple[CreatedConnection, CreatedConnection]:
    """A new tenant's internal "erp" connection and its "ascora" connection to ``crm`` (an
    Ascora simulator serving ``company_code``)."""
    return await erp_and_target(
        pool,
        keyring,
        crm,
        credentials=credentials_json(token=crm.sim.api_token),
        settings={"company_code": company_code},
    )
