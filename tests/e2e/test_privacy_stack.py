"""Issue 20's privacy erase on the whole stack: a person in three connected CRMs (Ascora,
Xero, Stripe simulators sending real signed webhooks to ingest, the processor worker,
outbound pushing through the real clients) is exported, then erased everywhere; the
providers' webhooks about the erase itself, and a later one carrying the address again,
bring nobody back and push nothing; the ledger accounts for every event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmsync.application import privacy
from crmsync.application.context import Context, KafkaTarget
from crmsync.application.models import PrivacyRequest
from crmsync.common.crypto import KeyRing
from tests.e2e.sync_harness import SimulatedCrm, Stack, running_stack, start_simulator, until

EMAIL = "ada@lovelace.example"
CUSTOMERS = "SELECT count(*) FROM customers"
LINKS = "SELECT count(*) FROM entity_links WHERE entity_type = 'customer'"
ERASED = "SELECT count(*) FROM sync_log WHERE outcome = 'erased'"

Crms = dict[str, SimulatedCrm]


@pytest.fixture
async def three_crms(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Stack, Crms]]:
    crms = {
        "ascora": await start_simulator("ascora", company_code="DEMO"),
        "xero": await start_simulator("xero"),
        "stripe": await start_simulator("stripe"),
    }
    try:
        async with running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack:
            for name, crm in crms.items():
                crm.connection_id = await stack.connect(crm, name)
            yield stack, crms
    finally:
        for crm in crms.values():
            await crm.runner.cleanup()


async def quiet(stack: Stack, crms: Crms, seconds: float = 3.0) -> None:
    """Nothing moves: no new sync log row, no write to any CRM, for ``seconds``."""
    for _ in range(10):
        before = (await stack.count("SELECT count(*) FROM sync_log"), _writes(crms))
        await asyncio.sleep(seconds)
        if before == (await stack.count("SELECT count(*) FROM sync_log"), _writes(crms)):
            return
    raise AssertionError("the stack kept moving")


def _writes(crms: Crms) -> dict[str, int]:
    return {name: len(crm.writes()) for name, crm in crms.items()}


def _context(stack: Stack, tenant_id: Any) -> Context:
    return Context(
        tenant_id=tenant_id,
        keyring=KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"]),
        public_base_url="https://hooks.example.test",
        kafka=KafkaTarget("127.0.0.1:9092"),
        actor="cli:privacy-e2e",
        allow_private_provider_urls=True,
    )


async def test_a_person_erased_everywhere_stays_erased_and_nothing_echoes(
    three_crms: tuple[Stack, Crms], kafka_bootstrap: str, topic_prefix: str
) -> None:
    stack, crms = three_crms
    since = datetime.now(UTC) - timedelta(seconds=1)
    crms["ascora"].sim.create(
        "customer",
        {
            "customerName": "Ada Lovelace",
            "emailAddress": "Ada@Lovelace.example",
            "phoneNumber": "+44 20 7946 0000",
        },
    )
    assert await stack.wait(LINKS, 3, seconds=60) == 3, "not linked in all three systems"
    await quiet(stack, crms)
    tenant_id = await stack.pool.fetchval("SELECT tenant_id FROM customers")
    ctx = _context(stack, tenant_id)

    async with stack.pool.acquire() as conn:
        bundle = await privacy.export(conn, ctx, PrivacyRequest(email=EMAIL), now=datetime.now(UTC))
    held = {s.provider: s.records for s in bundle.systems}
    for provider in ("ascora", "xero", "stripe"):
        (record,) = held[provider]
        assert record.status == "found", (provider, record)
        assert record.data is not None
        assert record.data["email"] == EMAIL, provider
    assert bundle.customers[0].data["phone"] == "+44 20 7946 0000"

    before = _writes(crms)
    async with stack.pool.acquire() as conn:
        report = await privacy.erase(conn, ctx, PrivacyRequest(email=EMAIL), now=datetime.now(UTC))
    assert report.complete, report
    steps = {s.provider: [(x.action, x.status) for x in s.steps] for s in report.systems}
    both = [("anonymise", "done"), ("delete", "done")]
    assert steps == {"ascora": both, "xero": both, "stripe": both}
    xero_delete = next(s for s in report.systems if s.provider == "xero").steps[1]
    assert "archived" in xero_delete.detail  # Xero deletes no contact: the report says so

    # In each system: Stripe and Ascora deleted it; Xero keeps an archived, anonymous contact.
    assert crms["stripe"].sim.live("customer") == []
    assert crms["ascora"].sim.live("customer") == []
    (contact,) = crms["xero"].sim.store["customer"].values()
    assert contact["ContactStatus"] == "ARCHIVED"
    assert "lovelace" not in str(contact).lower()

    # Each system reports the erase back by webhook: every one is refused, none is pushed.
    await until(lambda: all(crm.sim.log.webhooks for crm in crms.values()), "the erase's webhooks")
    await quiet(stack, crms)
    erased_echoes = await stack.count(ERASED)
    assert erased_echoes >= 3
    erase_calls = {name: n - before[name] for name, n in _writes(crms).items()}
    assert erase_calls == {"ascora": 2, "xero": 2, "stripe": 2}, "something was pushed back"

    # A later webhook carrying the address (the person signs up again at Stripe, or a
    # backfill lists an old record) does not bring them back.
    crms["stripe"].sim.create("customer", {"email": EMAIL, "name": "Ada Lovelace"})
    assert await stack.wait(ERASED, erased_echoes + 1) == erased_echoes + 1
    await quiet(stack, crms)
    assert await stack.count(CUSTOMERS) == 1
    assert await stack.pool.fetchval("SELECT data FROM customers") == {}
    assert _writes(crms) == {name: before[name] + 2 for name in crms}
    assert list(crms["xero"].sim.store["customer"].values()) == [contact]
    assert crms["ascora"].sim.live("customer") == []
    assert await stack.count("SELECT count(*) FROM dead_letters") == 0

    # Every event acknowledged is accounted for: the refused ones as skipped (erased).
    found = await stack.settled_ledger(kafka_bootstrap, topic_prefix, since=since)
    assert found.settled, (found.problems(), found.in_flight)
    skipped = sum(c.inbound.skipped["erased"] for c in found.connections)
    assert skipped == await stack.count(ERASED)
