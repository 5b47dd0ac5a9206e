"""FreshBooks' webhooks carry no time and no id (`name=client.update&object_id=1…`): through
the whole pipeline (real Kafka, processor, outbound), a second edit of a client, whose
notice is byte for byte the first one's, still arrives; a delete, whose notice says nothing
of when, is applied (the client FreshBooks keeps, fetched, says when); and the ledger
accounts for every notice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from crmsync.demo.sims import awaits_handshake
from tests.e2e.sync_harness import Crm, SimulatedCrm, Stack, Sync, ascora_company, eventually

Running = tuple[Stack, SimulatedCrm, SimulatedCrm, uuid.UUID]


@pytest.fixture
async def freshbooks_and_ascora(sync: Sync) -> AsyncIterator[Running]:
    async with sync(Crm("freshbooks"), ascora_company("A")) as (stack, (freshbooks, ascora)):
        assert freshbooks.connection_id is not None
        # FreshBooks delivers nothing until the callback connect registered is confirmed.
        assert await eventually(lambda: not awaits_handshake(freshbooks))
        yield stack, freshbooks, ascora, freshbooks.connection_id


async def test_identical_timeless_notices_each_count_and_a_delete_needs_no_time(
    freshbooks_and_ascora: Running, kafka_bootstrap: str, topic_prefix: str
) -> None:
    stack, freshbooks, ascora, connection = freshbooks_and_ascora
    since = datetime.now(UTC) - timedelta(seconds=1)
    sim = freshbooks.sim
    client = sim.create("customer", sim.seed_object("customer", 3))
    client_id = str(client["id"])
    pushed = await eventually(lambda: ascora.sim.live("customer"))
    assert len(pushed) == 1

    def ascoras(field: str, value: str) -> bool:
        return [c.get(field) for c in ascora.sim.live("customer")] == [value]

    # Two edits, each waited for, so the first notice's fetch cannot bring the second edit:
    # their notices are the same bytes, and the second must not pass for a redelivery.
    sim.update("customer", client_id, {"organization": "Brown & Sons"})
    assert await eventually(lambda: ascoras("companyName", "Brown & Sons"))
    sim.update("customer", client_id, {"organization": "Brown Bros"})
    assert await eventually(lambda: ascoras("companyName", "Brown Bros"))
    # The callback's handshake post (its "verify", before any change) is not a notice.
    notices = [
        hook
        for hook in sim.log.webhooks
        if hook.get("status") is not None
        and all(op != "verify" for _kind, _id, op in hook.get("changes", []))
    ]
    assert len(notices) == 3

    # A user deletes the client in FreshBooks right after the edit: the notice has no time,
    # the fetched client (vis_state 1) has FreshBooks' own, so the delete is not stale.
    sim.delete("customer", client_id)
    deleted = "SELECT count(*) FROM customers WHERE deleted_at IS NOT NULL"
    assert await stack.wait(deleted, 1) == 1
    assert await stack.count("SELECT count(*) FROM dead_letters") == 0

    report = await stack.settled_ledger(kafka_bootstrap, topic_prefix, since=since)
    assert report.balanced, report.problems()
    inbound = next(c for c in report.connections if c.connection_id == connection).inbound
    # create, two identical updates, delete: four notices, four applied, none taken for
    # a duplicate of another.
    assert (inbound.applied, inbound.unaccounted, inbound.dead_lettered) == (4, 0, 0)
