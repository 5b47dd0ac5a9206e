"""Issue 17 end to end: an invoice made, paid, then edited in the field-service CRM
(Ascora, which holds jobs) reaches Xero (which holds none): the invoice without its job,
the payment as a payment, and the edit Xero's rules refuse as one provider_rule dead
letter, nothing retried for ever.

Real signed webhooks from the Ascora simulator to ingest, the processor worker, outbound
pushing through the real Xero client to the Xero simulator, on the suite's Kafka and the
test's own database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.e2e.sync_harness import Crm, SimulatedCrm, Stack, until

OUTBOUND_DEAD = "SELECT count(*) FROM dead_letters WHERE stage = 'outbound'"


CRMS = (
    Crm("ascora", simulator={"company_code": "DEMO"}),
    Crm("xero", settings={"xero_base_currency": "AUD"}),
)


async def test_an_invoice_made_paid_then_edited_reaches_xero_as_xero_allows(
    crms: tuple[Stack, SimulatedCrm, SimulatedCrm], kafka_bootstrap: str, topic_prefix: str
) -> None:
    stack, ascora, xero = crms
    since = datetime.now(UTC) - timedelta(seconds=1)
    # One at a time: the order the processor applies references in is not what is tested.
    ascora.sim.create("customer", ascora.sim.seed_object("customer", 0))
    await until(lambda: xero.sim.live("customer"), "the contact in Xero")
    ascora.sim.create("job", ascora.sim.seed_object("job", 0))
    assert await stack.wait("SELECT count(*) FROM jobs", 1) == 1
    source = ascora.sim.create("invoice", ascora.sim.seed_object("invoice", 0))

    # The invoice names a job; Xero holds no jobs: the invoice goes without it.
    [invoice] = await until(lambda: xero.sim.live("invoice"), "the invoice in Xero")
    assert invoice["Status"] == "AUTHORISED"
    assert len(xero.sim.live("customer")) == 1

    # Paid in full in the CRM: Xero gets a payment against the invoice, which it then
    # marks PAID itself; the invoice's own "paid" is no edit.
    ascora.sim.create("payment", ascora.sim.seed_object("payment", 1))
    [payment] = await until(lambda: xero.sim.live("payment"), "the payment in Xero")
    assert payment["Invoice"]["InvoiceID"] == invoice["InvoiceID"]
    await until(lambda: xero.sim.get("invoice", invoice["InvoiceID"])["Status"] == "PAID", "PAID")
    # Ascora recomputes the invoice after the payment and sends it as a change of its own
    # ("Paid", balance 0). It must settle at Xero before the edit: a push that has not run
    # yet when the edit commits brings Xero up to the edit's version, and the refused push
    # then stands for both changes (2 dead-lettered where 1 is asserted below).
    paid_there = "SELECT count(*) FROM invoices WHERE data->>'status' = 'paid'"
    assert await stack.wait(paid_there, 1) == 1
    paid = await stack.settled_ledger(kafka_bootstrap, topic_prefix, since=since)
    assert paid.settled, (paid.problems(), paid.in_flight)
    before = next(c for c in paid.connections if c.connection_id == xero.connection_id).outbound
    assert before.dead_lettered == 0

    # Then edited in the CRM. Xero refuses edits to an invoice with a payment allocated:
    # nothing is sent, and the refusal is one dead letter with Xero's rule.
    lines = [dict(line) for line in source["lines"]]
    lines[0]["description"] = "Labour, after hours"
    ascora.sim.update("invoice", source["invoiceId"], {"lines": lines})
    assert await stack.wait(OUTBOUND_DEAD, 1) == 1
    dead = await stack.pool.fetchrow(
        "SELECT reason, detail FROM dead_letters WHERE stage = 'outbound'"
    )
    assert dead["reason"] == "provider_rule"
    assert "payment or credit note allocated" in dead["detail"]
    held = xero.sim.get("invoice", invoice["InvoiceID"])
    assert held["LineItems"][0]["Description"] == "Labour"

    # Nothing retried for ever, nothing parked on the way: the queue drains and stays
    # empty, Xero sees no more writes, and this is the only dead letter of the run.
    assert await stack.wait("SELECT count(*) FROM push_jobs", 0) == 0
    writes = len(xero.writes())
    await asyncio.sleep(3)
    assert len(xero.writes()) == writes
    assert await stack.count("SELECT count(*) FROM push_jobs") == 0
    assert await stack.count("SELECT count(*) FROM dead_letters") == 1
    edits = [r for r in xero.writes() if r["path"].endswith(invoice["InvoiceID"])]
    assert edits == [], "an edit of the paid invoice was sent to Xero"

    # Every committed change is accounted for at Xero (invariant 13): the job's by rule.
    found = await stack.settled_ledger(kafka_bootstrap, topic_prefix, since=since)
    assert found.settled, (found.problems(), found.in_flight)
    books = next(c for c in found.connections if c.connection_id == xero.connection_id).outbound
    assert books.skipped["settings"] == 1  # the job: Xero holds none
    assert books.dead_lettered == 1  # the refused edit
