"""A push finds a user's edit at the target that the processor then refuses (issue 17).

The push reads QuickBooks before its update, finds a state it has not heard and hands it
to the processor. Here that state names a customer we do not hold (the user moved the
invoice to a customer made at QuickBooks whose webhook never came), so the processor parks
it and, the wait bounded, dead-letters it naming the reference. Until now the push then
found the same state on every attempt, handed it over again, and each hand-off became
another dead letter, until the push's own attempts ran out (a ``changed_there`` dead letter
on top). What the processor cannot take is recorded once, with its reason (issue 17,
point 4): the state is handed over once, and the push then writes the canonical record,
its sync log naming the refused state's dead letter.

Real PostgreSQL and Kafka, the QuickBooks simulator behind the real QuickBooks client, the
processor's apply step and expiry, and the outbound pusher (tests/integration/
test_push_overwrite.py's harness).
"""

from __future__ import annotations

from connectors.spec import EntityType
from services.processor.decide import Outcome
from services.processor.pipeline import Processor
from tests.integration.test_push_overwrite import (
    CUSTOMER,
    INVOICE,
    Env,
    env,
    provider,
    sim_options,
)

# The harness's fixtures (QuickBooks), used here by name.
__all__ = ["env", "provider", "sim_options"]

INV_1: tuple[EntityType, str] = ("invoice", "inv-1")
OURS = {**INVOICE, "currency": "USD", "number": "INV-17B"}  # our edit on its way


async def _refused(env: Env) -> list[str]:
    rows = await env.pool.fetch(
        "SELECT reason FROM dead_letters WHERE connection_id = $1 ORDER BY created_at",
        env.target,
    )
    return [r["reason"] for r in rows]


async def test_a_target_state_the_processor_refuses_is_handed_over_once(env: Env) -> None:
    await env.publish(1, CUSTOMER)
    await env.publish(2, {**OURS, "number": "INV-17"}, *INV_1, customer_id="cust-1")
    while await env.push():  # the customer, then the invoice that names it
        pass
    sim = env.qb.sim
    [invoice] = sim.live("invoice")
    ours_there = invoice["CustomerRef"]["value"]

    # At QuickBooks the user moves the invoice to a customer made there (its webhook never
    # reaches us) and changes its due date; then our edit of the number is pushed.
    other = sim.create("customer", {"DisplayName": "Someone Else"}, notify=False)
    sim.update(
        "invoice",
        invoice["Id"],
        {"CustomerRef": {"value": other["Id"]}, "DueDate": "2026-12-29", "sparse": True},
    )
    await env.publish(3, OURS, *INV_1, customer_id="cust-1")

    handed: list[Outcome] = []
    for _ in range(4):  # the push's attempts, each after the processor's wait ran out
        await env.push()
        handed += [a.outcome for a in await env.handed()]
        await Processor(env.pool).expire(0.0, 10)  # the reference wait, bounded, is up

    # The state was handed over once, parked for the customer it names, and refused once
    # with that reason; the push did not wait for it again.
    assert handed == [Outcome.WAITING]
    assert await _refused(env) == ["missing_reference"]
    # The push then wrote the canonical record at the version it read: ours everywhere.
    [invoice] = sim.live("invoice")
    assert (invoice["DocNumber"], invoice["CustomerRef"]["value"]) == ("INV-17B", ours_there)
    log = await env.pool.fetch(
        "SELECT outcome, error FROM sync_log WHERE connection_id = $1 AND direction = 'out'"
        " AND entity_type = 'invoice' ORDER BY id",
        env.target,
    )
    assert [r["outcome"] for r in log] == ["pushed", "changed_there", "changed_there", "pushed"]
    assert "missing_reference" in log[2]["error"]
    assert await env.push() == 0
