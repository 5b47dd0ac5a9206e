"""MYOB through the whole pipeline. MYOB sends no webhooks: the outbound service's reconcile
schedule polls its simulator (modified-since), and what it finds takes the same road a
webhook's change would: ``changes.normalized``, the processor, Postgres, the outbox,
outbound's pushes to the other system (Xero here) — and back to MYOB from there.

- A customer, an invoice and a part payment made in MYOB reach Xero; an edit made in Xero
  reaches MYOB's card; nothing is dead-lettered and echoes change nothing.
- A poll killed (SIGKILL) midway and started again lists on from its checkpoint: every
  record arrives once, none is applied twice.
"""

from __future__ import annotations

import asyncio
import json

from connectors.myob.simulator import SIM_GST_UID, SIM_ITEM_UID
from tests.e2e.sync_harness import (
    POLLED_EVERY_SECOND,
    QUICK_SCHEDULE,
    Crm,
    SimulatedCrm,
    Stack,
    Sync,
    until,
)
from tests.e2e.test_backfill_reconcile import cli, env_for, kill_a_third_in, resumes

Crms = tuple[Stack, SimulatedCrm, SimulatedCrm]


# MYOB polled every second here (a minute by default) so the test takes seconds.
CRMS = (Crm("myob", settings=POLLED_EVERY_SECOND), Crm("xero"))
OUTBOUND = QUICK_SCHEDULE


def _main_address(card: dict[str, object]) -> dict[str, object]:
    addresses = card.get("Addresses") or []
    assert isinstance(addresses, list)
    return next((a for a in addresses if a.get("Location") == 1), {})


async def test_myob_records_reach_xero_and_a_xero_edit_comes_back(crms: Crms) -> None:
    stack, myob, xero = crms
    customer = myob.sim.create(
        "customer",
        {
            "IsIndividual": True,
            "FirstName": "Grace",
            "LastName": "Hopper",
            "Addresses": [{"Location": 1, "Email": "grace@example.com", "Phone1": "0400 111 222"}],
        },
    )
    invoice = myob.sim.create(
        "invoice",
        {
            "Customer": {"UID": customer["UID"]},
            "Number": "MY-1",
            "Date": "2026-12-01T00:00:00",
            "Terms": {"PaymentIsDue": "InAGivenNumberOfDays", "BalanceDueDate": 14},
            "Lines": [
                {"Description": "Labour", "ShipQuantity": 2, "UnitPrice": 90,
                 "Item": {"UID": SIM_ITEM_UID}, "TaxCode": {"UID": SIM_GST_UID}},
            ],
        },
    )  # fmt: skip
    assert invoice["TotalAmount"] == 198.0
    myob.sim.create(
        "payment",
        {
            "Customer": {"UID": customer["UID"]},
            "AmountReceived": 50,
            "Memo": "Deposit",
            "Invoices": [{"UID": invoice["UID"], "AmountApplied": 50, "Type": "Invoice"}],
        },
    )
    assert await stack.wait("SELECT count(*) FROM customers", 1, seconds=60) == 1
    assert await stack.wait("SELECT count(*) FROM invoices", 1, seconds=60) == 1
    assert await stack.wait("SELECT count(*) FROM payments", 1, seconds=60) == 1
    await until(lambda: xero.sim.live("payment"), seconds=60.0)
    [contact] = xero.sim.live("customer")
    assert contact["EmailAddress"] == "grace@example.com"
    [xero_invoice] = xero.sim.live("invoice")
    assert xero_invoice["InvoiceNumber"] == "MY-1"
    assert xero_invoice["Total"] == 198
    [xero_payment] = xero.sim.live("payment")
    assert xero_payment["Amount"] == 50
    await until(lambda: xero.sim.live("invoice")[0]["AmountDue"] == 148, seconds=60.0)
    row = await stack.pool.fetchrow("SELECT data FROM invoices")
    data = json.loads(row["data"]) if isinstance(row["data"], str) else row["data"]
    assert (data["total"], data["tax"], data["amount_due"]) == (19_800, 1_800, 14_800)

    # And back: the phone changed in Xero (its contact webhook) reaches MYOB's card.
    xero_contact_id = contact["ContactID"]
    xero.sim.update(
        "customer",
        xero_contact_id,
        {"Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "0499 999 999"}]},
    )
    await until(
        lambda: _main_address(myob.sim.live("customer")[0]).get("Phone1") == "0499 999 999",
        seconds=60.0,
    )
    card = myob.sim.live("customer")[0]
    assert card["FirstName"] == "Grace"
    assert card["LastName"] == "Hopper"
    assert _main_address(card)["Email"] == "grace@example.com"
    await stack.quiet_after_echoes(customers=1, invoices=1, payments=1)
    # MYOB's records were created once each: no push came back to MYOB as a duplicate.
    assert len(myob.sim.live("customer")) == 1
    assert len(myob.sim.live("invoice")) == 1
    assert len(myob.sim.live("payment")) == 1


RECORDS = 3_000
PAGE = 100


async def test_a_poll_killed_midway_resumes_and_applies_each_record_once(
    sync: Sync, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = {"entity_types": ["customer"], "myob_page_size": PAGE,
                "rate_limit": {"rate": 8, "per_seconds": 1, "burst": 8}}  # fmt: skip
    # The schedule is off: the runs under test are the CLI's, one killed, one resumed.
    async with sync(Crm("myob", settings=settings), outbound_sync_concurrency=0) as (
        stack,
        (myob,),
    ):
        conn_id = myob.connection_id
        # Changed after the connection was made: inside the poll's modified-since window.
        for i in range(RECORDS):
            myob.sim.create("customer", myob.sim.seed_object("customer", i))
        env = env_for(database_url, kafka_bootstrap, topic_prefix)
        first = cli(env, "reconcile", str(conn_id), "--json")
        await kill_a_third_in(stack, first, RECORDS, seconds=60)
        status, kind, seen_at_kill = await stack.pool.fetchrow(
            "SELECT status, kind, records_seen FROM sync_jobs"
        )
        assert (status, kind) == ("running", "reconcile")
        assert 0 < seen_at_kill < RECORDS

        await resumes(stack, env, "reconcile", conn_id, RECORDS, within=300)
        # Only the pages after the checkpoint were listed again (at most one repeated).
        lists = [
            r for r in myob.sim.log.requests
            if r["method"] == "GET" and r["path"].endswith("/Contact/Customer")
        ]  # fmt: skip
        assert len(lists) <= RECORDS // PAGE + 2

        assert await stack.wait("SELECT count(*) FROM customers", RECORDS, seconds=240) == (RECORDS)
        await asyncio.sleep(1.0)
        # Nothing lost, nothing applied twice: one customer and one link per card, each
        # at its first version (a repeated page was dropped as duplicates).
        assert await stack.count("SELECT count(*) FROM customers") == RECORDS
        links = await stack.count(
            "SELECT count(DISTINCT external_id) FROM entity_links WHERE connection_id = $1",
            conn_id,
        )
        assert links == RECORDS
        assert await stack.count("SELECT max(version) FROM customers") == 1
        # The high-water mark moved to the resumed run's start: the next poll starts there.
        marked = await stack.pool.fetchval(
            "SELECT last_reconciled_at FROM connections WHERE id = $1", conn_id
        )
        assert marked is not None
        assert await stack.dead_letters() == []
