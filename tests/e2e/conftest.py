"""Fixtures of the whole-pipeline tests: a running stack syncing simulated CRMs."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.sync_harness import SimulatedCrm, Stack, Sync, ascora_company, synced


@pytest.fixture
def sync(database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Sync:
    """``sync(*crms: Crm, **outbound)``: ``synced`` on the suite's Kafka under this test's
    topic prefix and database."""
    return functools.partial(synced, database_url, kafka_bootstrap, topic_prefix, tmp_path)


@pytest.fixture
async def crms(
    request: pytest.FixtureRequest, sync: Sync
) -> AsyncIterator[tuple[Stack, *tuple[SimulatedCrm, ...]]]:
    """The stack and a simulator of each of the test module's ``CRMS`` (``Crm``s), synced
    (the module's ``OUTBOUND``, if any: OutboundSettings fields to override)."""
    outbound = getattr(request.module, "OUTBOUND", {})
    async with sync(*request.module.CRMS, **outbound) as (stack, simulators):
        yield (stack, *simulators)


@pytest.fixture
async def two_crms(sync: Sync) -> AsyncIterator[tuple[Stack, SimulatedCrm, SimulatedCrm]]:
    """Two Ascora companies of one tenant (A and B), connected as ascora-a and ascora-b."""
    async with sync(ascora_company("A", "ascora-a"), ascora_company("B", "ascora-b")) as (
        stack,
        (a, b),
    ):
        yield stack, a, b
