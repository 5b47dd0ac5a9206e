"""DESIGN invariant 12 through the services as they run: with the operator setting off,
a connection whose base URL is a simulator on 127.0.0.1 is never called by the outbound
service (a push) nor by the processor (a hydration); each call becomes a dead letter with
reason ``address_refused`` that names the setting, and nothing is retried."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.sync_harness import running_stack, start_simulator

DEAD = "SELECT count(*) FROM dead_letters WHERE stage = $1 AND reason = 'address_refused'"


async def test_outbound_does_not_push_to_loopback_unless_allowed(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    a = await start_simulator("ascora", company_code="A")
    b = await start_simulator("ascora", company_code="B")
    try:
        # The processor keeps the test session's setting (allowed); outbound's is off.
        async with running_stack(
            database_url, kafka_bootstrap, topic_prefix, tmp_path, allow_private_provider_urls=False
        ) as stack:
            await stack.connect(a, "ascora-a", {"company_code": "A"})
            await stack.connect(b, "ascora-b", {"company_code": "B"})
            a.sim.create("customer", a.sim.seed_object("customer", 1))
            assert await stack.wait(DEAD, 1, "outbound") == 1
            detail = await stack.pool.fetchval("SELECT detail FROM dead_letters")
            assert "CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS" in detail
            assert b.writes() == []
            attempts = await stack.pool.fetchval("SELECT payload FROM dead_letters")
            assert b'"attempts": 1' in attempts  # refused at once, not retried
    finally:
        for crm in (a, b):
            await crm.runner.cleanup()


async def test_the_processor_does_not_hydrate_from_loopback_unless_allowed(
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Xero's webhooks name the record only: the processor must fetch it.
    xero = await start_simulator("xero")
    monkeypatch.setenv("CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS", "false")  # the worker's
    try:
        async with running_stack(
            database_url, kafka_bootstrap, topic_prefix, tmp_path, allow_private_provider_urls=True
        ) as stack:
            await stack.connect(xero, "xero")
            xero.sim.create("customer", xero.sim.seed_object("customer", 1))
            assert await stack.wait(DEAD, 1, "hydrate") == 1
            assert xero.requests("GET") == []
            assert await stack.count("SELECT count(*) FROM customers") == 0
    finally:
        await xero.runner.cleanup()
