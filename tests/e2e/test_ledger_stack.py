"""The ledger as the fault tests' oracle, against the running stack: ingest, the faust
processor worker and outbound, two simulated CRMs that echo our writes back. While events
flow it never reports a loss (what is moving is in flight); once quiet it settles, and
its counts are the flow's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from crmsync.application.context import KafkaTarget
from crmsync.application.ledger import Ledger
from crmsync.application.ledger_io import ledger
from tests.e2e.sync_harness import SimulatedCrm, Stack

CUSTOMERS = "SELECT count(*) FROM customers"
# Enough that the ledger is read while some are still on their way (measured: 5 finish
# before the first read).
N = 30


async def test_the_ledger_never_reports_a_loss_while_running_and_settles_when_quiet(
    two_crms: tuple[Stack, SimulatedCrm, SimulatedCrm], kafka_bootstrap: str, topic_prefix: str
) -> None:
    stack, a, b = two_crms
    since = datetime.now(UTC) - timedelta(seconds=1)
    a_id, b_id = a.connection_id, b.connection_id
    # The harness's group names (tests/e2e/sync_harness.py, test_processor_pipeline.py).
    kafka = KafkaTarget(
        kafka_bootstrap,
        topic_prefix,
        processor_group=f"crmsync-{topic_prefix}processor",
        outbound_group=f"crmsync-{topic_prefix}outbound",
    )

    async def read() -> Ledger:
        found = await ledger(stack.pool, kafka, since=since)
        assert found.balanced, found.problems()
        return found

    for n in range(N):
        a.sim.create("customer", {"customerName": f"Customer {n}", "phoneNumber": f"+61 {n}"})
    while await stack.count(CUSTOMERS) < N:
        await read()  # mid-flow: in flight, never lost

    settled = await read()
    for _ in range(120):
        if settled.settled:
            break
        await asyncio.sleep(0.5)
        settled = await read()
    assert settled.settled, (settled.in_flight, settled.notes)

    by_id = {c.connection_id: c for c in settled.connections}
    inbound_a, outbound_b = by_id[a_id].inbound, by_id[b_id].outbound
    assert inbound_a.applied == N
    assert inbound_a.unaccounted == inbound_a.dead_lettered == 0
    # N changes, each pushed once to B and never back to A.
    assert (outbound_b.changes, outbound_b.pushed) == (N, N)
    assert dict(by_id[a_id].outbound.skipped) == {"echo": N}
    assert len(b.writes()) == N
    # B's echoes of our creates are events too: applied (as no change) or duplicates.
    echoes = by_id[b_id].inbound
    assert echoes.accepted == echoes.applied + echoes.duplicates + sum(echoes.skipped.values())
