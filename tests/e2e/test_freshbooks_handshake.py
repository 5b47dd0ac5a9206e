"""FreshBooks' callback handshake end to end, as an operator meets it: a FreshBooks
connection is added with no secret of ours, the callback is registered in (simulated)
FreshBooks, its unsigned ``callback.verify`` post reaches ingest, the outbound service sends
the code back over the connection's API, and FreshBooks' webhooks, signed with that code
from then on, land in Postgres. A forged handshake posted meanwhile is refused by
FreshBooks and never becomes a secret. Real Kafka, processor, outbound and ingest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from connectors.generic.simulator import MappingSimulator
from connectors.runtime import credentials_json
from crmsync.application.connections import first_secret
from crmsync.demo.sims import PROFILES
from tests.e2e.sync_harness import SimulatedCrm, Stack, eventually, running_stack, simulated

Running = tuple[Stack, SimulatedCrm]


@pytest.fixture
async def freshbooks(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Running]:
    async with (
        simulated("freshbooks") as crm,
        running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack,
    ):
        yield stack, crm


async def test_the_callback_handshake_makes_freshbooks_webhooks_land(freshbooks: Running) -> None:
    stack, crm = freshbooks
    sim = crm.sim
    assert isinstance(sim, MappingSimulator)
    settings = dict(PROFILES["freshbooks"].settings)
    # What `connections add --provider freshbooks` decides: no secret of ours, a window.
    secret, until = first_secret("generic", None, None, settings, now=datetime.now(UTC))
    assert secret is None
    assert until is not None
    created = await stack.add_connection(
        "generic",
        "freshbooks",
        base_url=crm.base_url,
        api_credentials=credentials_json(token=sim.api_token),
        settings=settings,
        handshakes_until=until,
    )
    path = f"/webhooks/generic/{created.id}"
    sim.webhook_url = stack.ingest_url + path

    # Someone who found the URL posts a handshake of their own first: stored (it cannot be
    # told from FreshBooks' own), then refused by FreshBooks when sent back.
    forged = urlencode(
        {
            "name": "callback.verify",
            "verifier": "forged-code",
            "object_id": "1",
            "account_id": "xazq5",
        }
    )
    async with aiohttp.ClientSession() as session:
        answer = await session.post(
            stack.ingest_url + path,
            data=forged,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status == 202
    # The operator registers the callback in FreshBooks, which posts its code to ingest.
    sim.register_callback()
    assert await eventually(lambda: sim.callback_verified is True, seconds=60)
    settled = "SELECT count(*) FROM webhook_handshakes WHERE state <> 'pending'"
    assert await stack.wait(settled, 2) == 2
    states = "SELECT state FROM webhook_handshakes ORDER BY received_at"
    rows = [r["state"] for r in await stack.pool.fetch(states)]
    assert rows == ["refused", "confirmed"]
    assert await stack.count("SELECT count(*) FROM webhook_secrets") == 1

    # FreshBooks now delivers, signed with the code: a client made there lands in Postgres.
    sim.create("customer", sim.seed_object("customer", 7))
    assert await stack.wait("SELECT count(*) FROM customers", 1) == 1
    row = await stack.pool.fetchval("SELECT data FROM customers")
    assert row["email"] == "client7@example.com"
    delivered = [hook for hook in sim.log.webhooks if hook.get("status") is not None]
    assert [hook["status"] for hook in delivered][-1] == 200
    assert await stack.count("SELECT count(*) FROM dead_letters") == 0


async def test_a_simulated_freshbooks_is_connected_through_its_handshake(
    freshbooks: Running,
) -> None:
    """What `crmsync simulate` and the demo do (crmsync.demo.sims.connect): the FreshBooks
    connection gets no secret of ours, the simulator registers its callback, and the code
    its handshake carries becomes the secret once outbound confirmed it, as for a user
    connecting the real FreshBooks (it was given a made-up secret instead). Connected
    again (adopted), it keeps that secret and registers nothing."""
    stack, crm = freshbooks
    sim = crm.sim
    assert isinstance(sim, MappingSimulator)
    connection_id = await stack.connect(crm, "freshbooks")
    assert await eventually(lambda: sim.callback_verified is True, seconds=60)
    states = "SELECT state FROM webhook_handshakes WHERE connection_id = $1"
    assert [r["state"] for r in await stack.pool.fetch(states, connection_id)] == ["confirmed"]
    secrets = "SELECT count(*) FROM webhook_secrets WHERE connection_id = $1"
    assert await stack.count(secrets, connection_id) == 1
    sim.create("customer", sim.seed_object("customer", 3))
    assert await stack.wait("SELECT count(*) FROM customers", 1) == 1

    verifier = sim.webhook_secret
    assert await stack.connect(crm, "freshbooks") == connection_id
    assert sim.webhook_secret == verifier
    assert sim.callback_verified is True
    assert await stack.count(secrets, connection_id) == 1
    assert await stack.count("SELECT count(*) FROM dead_letters") == 0
