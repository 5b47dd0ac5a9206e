"""A CRM with no built-in connector, connected without code: AcmeCRM through its
declarative mapping file (connectors/generic/examples/acme.json), syncing both ways with
a simulated Ascora through the whole pipeline (real Kafka, processor worker, outbound)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.generic import auth_for, load_mapping_file
from connectors.generic.client import make_client
from crmsync.demo.sims import ACME_MAPPING, PROFILES
from tests.e2e.sync_harness import SimulatedCrm, Stack, eventually, synced_with_ascora

CUSTOMER = {
    "name": "Amelia Kelly",
    "email": "amelia@kelly.example",
    "phone": "+61 7 3555 0101",
}


@pytest.fixture
async def pair(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Stack, SimulatedCrm, SimulatedCrm]]:
    async with synced_with_ascora(
        database_url, kafka_bootstrap, topic_prefix, tmp_path, provider="generic", name="acme"
    ) as running:
        yield running


async def test_a_mapped_crm_syncs_both_ways_with_a_built_in_one(
    pair: tuple[Stack, SimulatedCrm, SimulatedCrm],
) -> None:
    stack, acme, ascora = pair
    _, mapping = load_mapping_file(ACME_MAPPING)
    async with aiohttp.ClientSession() as session:
        # A user creates a contact in Acme (through Acme's API, as its UI would).
        client = make_client(
            session,
            acme.base_url,
            auth_for(mapping, token="sim-token"),
            PROFILES["generic"].settings,
        )
        created = await client.create("customer", CUSTOMER, {}, idempotency_key="user-1")

        assert await stack.wait("SELECT count(*) FROM customers", 1) == 1
        row = await stack.pool.fetchval("SELECT data FROM customers")
        assert {k: row[k] for k in CUSTOMER} == CUSTOMER

        pushed = await eventually(lambda: ascora.sim.live("customer"))
        assert len(pushed) == 1
        assert pushed[0]["customerName"] == "Amelia Kelly"
        assert pushed[0]["emailAddress"] == "amelia@kelly.example"
        assert pushed[0]["phoneNumber"] == "+61 7 3555 0101"

        # An edit in Ascora comes back to Acme, through Acme's mapped update endpoint.
        ascora_id = next(iter(ascora.sim.store["customer"]))
        ascora.sim.update("customer", ascora_id, {"phoneNumber": "+61 7 3555 0199"})

        async def acme_phone() -> Any:
            return (await client.fetch("customer", created.external_id)).data["phone"]

        phone = None
        for _ in range(300):
            phone = await acme_phone()
            if phone == "+61 7 3555 0199":
                break
            await asyncio.sleep(0.1)
        assert phone == "+61 7 3555 0199"
        assert [r["method"] for r in acme.writes() if r["path"] != "/_sim"][-1] in {"PATCH", "PUT"}
        assert await stack.count("SELECT count(*) FROM customers") == 1
        assert await stack.count("SELECT count(*) FROM dead_letters") == 0
