"""Invariant 5 end to end: one edit in one CRM → exactly one push to the other → silence.

Two simulated Ascora instances (two companies of one tenant) send real signed webhooks to
ingest; the processor worker applies them; outbound pushes through the real client. Each
simulator also echoes our own writes back by webhook, exactly as a real CRM does: those
echoes must come back as no change.
"""

from __future__ import annotations

import asyncio

from tests.e2e.sync_harness import SimulatedCrm, Stack

# Committed changes: every change is a version (the relay deletes outbox rows it published).
CHANGES = "SELECT coalesce(sum(version), 0) FROM customers"
CUSTOMERS = "SELECT count(*) FROM customers"


async def quiet(stack: Stack, *crms: SimulatedCrm, seconds: float = 3.0) -> None:
    """Wait until nothing moves: no new changes, no new writes to any CRM."""
    before = (await stack.count(CHANGES), [len(c.writes()) for c in crms])
    await asyncio.sleep(seconds)
    after = (await stack.count(CHANGES), [len(c.writes()) for c in crms])
    assert before == after, f"still moving: {before} → {after}"


async def test_one_edit_is_pushed_once_to_the_other_crm_and_echoes_stay_silent(
    two_crms: tuple[Stack, SimulatedCrm, SimulatedCrm],
) -> None:
    stack, a, b = two_crms
    a.sim.create(
        "customer",
        {
            "customerName": "Harbour Plumbing",
            "emailAddress": "Office@HarbourPlumbing.example",
            "phoneNumber": "+61 2 5550 1234",
        },
    )
    assert await stack.wait(CUSTOMERS, 1) == 1
    # B receives exactly one create; its echo webhook changes nothing.
    for _ in range(100):
        if b.sim.live("customer"):
            break
        await asyncio.sleep(0.1)
    created = b.sim.live("customer")
    assert len(created) == 1
    assert [r["method"] for r in b.writes()] == ["POST"]
    await quiet(stack, a, b)
    assert await stack.count(CHANGES) == 1, "the echo from B emitted a change"
    assert await stack.count(CUSTOMERS) == 1
    assert a.writes() == [], "a change was pushed back to the CRM it came from"
    echoes = await stack.count("SELECT count(*) FROM sync_log WHERE outcome = 'echo'")
    assert echoes >= 1

    # An edit in B travels to A as one update, and stops there.
    b_id = next(iter(b.sim.store["customer"]))
    b.sim.update("customer", b_id, {"phoneNumber": "+61 2 5550 9999"})
    assert await stack.wait(CHANGES, 2) == 2
    for _ in range(100):
        if a.writes():
            break
        await asyncio.sleep(0.1)
    await quiet(stack, a, b)
    assert [r["method"] for r in a.writes()] == ["PATCH"]
    assert [r["method"] for r in b.writes()] == ["POST"]
    assert await stack.count(CHANGES) == 2
    phone = await stack.pool.fetchval("SELECT data->>'phone' FROM customers")
    assert phone == "+61 2 5550 9999"
    a_customer = a.sim.live("customer")[0]
    assert "9999" in str(a_customer)
