"""One tenant pushing from an internal ERP connection to an Ascora simulator: the set-up
the outbound and ledger tests share."""

from __future__ import annotations

import uuid

import asyncpg

from connectors.runtime import credentials_json
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing
from tests.e2e.sync_harness import SimulatedCrm


async def erp_and_ascora(
    pool: asyncpg.Pool, keyring: KeyRing, crm: SimulatedCrm, company_code: str
) -> tuple[CreatedConnection, CreatedConnection]:
    """A new tenant's internal "erp" connection and its "ascora" connection to ``crm`` (an
    Ascora simulator serving ``company_code``)."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    async with pool.acquire() as conn:
        erp = await create_connection(
            conn, keyring, tenant=tenant, provider="internal", name="erp", webhook_secret=None
        )
        ascora = await create_connection(
            conn,
            keyring,
            tenant=tenant,
            provider="ascora",
            name="ascora",
            webhook_secret=None,
            base_url=crm.base_url,
            api_credentials=credentials_json(token=crm.sim.api_token),
            settings={"company_code": company_code},
        )
    return erp, ascora
