"""Each provider of the mapping-file catalogue (Mailchimp, Mautic, WooCommerce, FreshBooks),
simulated from its file as `crmsync simulate` runs it, syncing customers both ways with a simulated
Ascora through the whole pipeline (real Kafka, processor worker, outbound)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.generic import CATALOGUE
from connectors.generic.paths import read
from crmsync.demo.sims import PROFILES, awaits_handshake
from tests.e2e.sync_harness import SimulatedCrm, Stack, eventually, synced_with_ascora

# Where each keeps a customer's phone, as its mapping file says.
PHONE = {
    "mailchimp": "merge_fields.PHONE",
    "mautic": "fields.all.phone",
    "woocommerce": "billing.phone",
    "freshbooks": "bus_phone",
}


@pytest.fixture(params=sorted(CATALOGUE))
async def pair(
    request: pytest.FixtureRequest,
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[str, Stack, SimulatedCrm, SimulatedCrm]]:
    name: str = request.param
    async with synced_with_ascora(
        database_url, kafka_bootstrap, topic_prefix, tmp_path, provider=name, name=name
    ) as (stack, mapped, ascora):
        yield name, stack, mapped, ascora


async def test_a_catalogue_provider_syncs_both_ways_with_a_built_in_one(
    pair: tuple[str, Stack, SimulatedCrm, SimulatedCrm],
) -> None:
    name, stack, mapped, ascora = pair
    assert PROFILES[name].connection_provider == "generic"
    # FreshBooks delivers nothing until its callback's code is confirmed (connect registers
    # the callback): made before that, the customer's webhook was never sent.
    assert await eventually(lambda: not awaits_handshake(mapped))
    # A user adds a customer in the provider's own UI: its webhook brings it in.
    mapped.sim.create("customer", mapped.sim.seed_object("customer", 3))

    assert await stack.wait("SELECT count(*) FROM customers", 1) == 1
    row = await stack.pool.fetchval("SELECT data FROM customers")
    assert row["email"].endswith("3@example.com")

    pushed = await eventually(lambda: ascora.sim.live("customer"))
    assert len(pushed) == 1
    assert pushed[0]["emailAddress"] == row["email"]

    # An edit in Ascora goes back to the provider through its mapped update endpoint.
    ascora_id = next(iter(ascora.sim.store["customer"]))
    ascora.sim.update("customer", ascora_id, {"phoneNumber": "+61 7 3555 0199"})
    record_id = next(iter(mapped.sim.store["customer"]))

    def phone() -> bool:
        return read(mapped.sim.store["customer"][record_id], PHONE[name]) == "+61 7 3555 0199"

    assert await eventually(phone)
    assert [r["method"] for r in mapped.writes()][-1] in {"PATCH", "PUT"}
    assert await stack.count("SELECT count(*) FROM customers") == 1
    assert await stack.count("SELECT count(*) FROM dead_letters") == 0
