"""The Square client against the Square simulator over real HTTP, webhooks included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from connectors.base import SignatureError, WebhookRequest
from connectors.http import (
    NotFoundError,
    ProviderError,
    StaticAuth,
    UnsupportedOperationError,
    send,
)
from connectors.simkit import Fault
from connectors.square import CONNECTOR
from connectors.square.client import SquareClient, make_client
from connectors.square.simulator import SIM_LOCATION_ID, SquareSimulator
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import (
    Simulated,
    TickingClock,
    a_paid_invoice_asks_nothing_but_refuses_real_edits,
    assert_open_one_line_totals,
    client_of,
    deleted,
    delivered,
    every_page,
    invoiced,
    one_line_invoice,
    records_of,
    simulating,
)

KEY = "square-signature-key-for-the-simulator"
SETTINGS = {"square_location_id": SIM_LOCATION_ID}
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Stack(Simulated[SquareSimulator]):
    def client(self) -> SquareClient:
        return client_of(SquareClient, make_client, self.session, self.url, SETTINGS)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    def make(url: str) -> SquareSimulator:
        return SquareSimulator(webhook_url=url, webhook_secret=KEY, clock=TickingClock(START))

    async with simulating(make, "/webhooks/square/c1") as (sim, sim_url, hooks, session):
        yield Stack(sim, sim_url, hooks, session)


CUSTOMER = {"name": "Harbour Plumbing", "email": "office@harbour.example", "phone": "+61 2 5550 1"}
INVOICE = one_line_invoice("SQ-100")


async def test_customer_create_update_delete_and_the_signed_webhooks(stack: Stack) -> None:
    client = stack.client()
    created = await client.create("customer", CUSTOMER, {}, "key-1")
    assert created.data["email"] == "office@harbour.example"
    assert created.version == "0"
    updated = await client.update("customer", created.external_id, {"phone": "+61 2 5550 2"}, {})
    assert updated.data["phone"] == "+61 2 5550 2"
    assert updated.version == "1"
    await deleted(client, "customer", created.external_id)
    await stack.sim.drained()
    kinds = []
    for _, _, parsed in delivered(CONNECTOR, stack.inbox.hooks, KEY, {}, now=0, url=stack.hook_url):
        kinds.append((parsed.items[0].entity_type, parsed.items[0].op))
    assert kinds == [("customer", "upsert"), ("customer", "upsert"), ("customer", "delete")]
    headers, body = stack.inbox.hooks[0].headers, stack.inbox.hooks[0].body
    moved = WebhookRequest("POST", stack.hook_url + "x", headers, body)
    with pytest.raises(SignatureError, match="bad_signature"):
        CONNECTOR.scheme.verify(moved, [KEY], 0)


async def test_a_stale_version_is_refused_in_squares_words_and_the_client_reads_it_fresh(
    stack: Stack,
) -> None:
    client = stack.client()
    created = await client.create("customer", CUSTOMER, {}, "key-1")
    stack.sim.update("customer", created.external_id, {"note": "edited in the dashboard"})
    with pytest.raises(ProviderError) as caught:
        await send(
            stack.session,
            "PUT",
            f"{stack.url}/v2/customers/{created.external_id}",
            auth=StaticAuth.bearer("sim-token"),
            json_body={"given_name": "Stale", "version": 0},
        )
    assert caught.value.status == 400
    assert "VERSION_MISMATCH" in caught.value.provider_message
    assert not caught.value.transient
    # The client reads the current version before writing: the dashboard edit is kept.
    updated = await client.update("customer", created.external_id, {"name": "Harbour Ltd"}, {})
    assert updated.data["name"] == "Harbour Ltd"
    assert updated.data["notes"] == "edited in the dashboard"


async def test_a_repeated_idempotency_key_creates_once(stack: Stack) -> None:
    client = stack.client()
    first = await client.create("customer", CUSTOMER, {}, "same-key")
    second = await client.create("customer", CUSTOMER, {}, "same-key")
    assert first.external_id == second.external_id
    assert len(stack.sim.live("customer")) == 1


async def test_an_invoice_is_an_order_plus_an_invoice_and_a_payment_settles_it(
    stack: Stack,
) -> None:
    client = stack.client()
    customer, invoice = await invoiced(client, CUSTOMER, INVOICE)
    assert_open_one_line_totals(invoice)
    assert invoice.data["lines"] == INVOICE["lines"]
    assert invoice.refs == {"customer_id": customer.external_id}
    [stored] = stack.sim.live("invoice")
    assert stored["status"] == "UNPAID"
    assert stored["order_id"] in stack.sim.orders

    payment = await client.create(
        "payment",
        {"amount": 27_500, "currency": "AUD", "status": "succeeded", "reference": "EFT 1"},
        {"invoice_id": invoice.external_id},
        "p",
    )
    assert payment.refs == {"invoice_id": invoice.external_id, "customer_id": customer.external_id}
    assert payment.data["status"] == "succeeded"
    paid = await client.fetch("invoice", invoice.external_id)
    assert paid.data["status"] == "paid"
    assert paid.data["amount_due"] == 0
    # A completed payment is final at Square; an unchanged one is not an error.
    assert (await client.update("payment", payment.external_id, {"reference": "EFT 1"}, {})).data
    with pytest.raises(ProviderRuleError, match="completed payment cannot change"):
        await client.update("payment", payment.external_id, {"reference": "EFT 2"}, {})
    with pytest.raises(UnsupportedOperationError):
        await client.delete("payment", payment.external_id)
    with pytest.raises(UnsupportedOperationError, match="PAID invoice"):
        await client.delete("invoice", invoice.external_id)


async def test_a_paid_invoice_takes_the_state_it_holds_and_refuses_only_real_edits(
    stack: Stack,
) -> None:
    """Settled by a payment, Square marks the invoice PAID itself: the derived "paid" edit
    (status, amount due) that follows asks nothing of it, and was a provider_rule dead
    letter (seen in the all-provider demo)."""
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    await a_paid_invoice_asks_nothing_but_refuses_real_edits(
        client,
        stack.sim.log.requests,
        invoice,
        refs,
        refused=r"PAID invoice cannot be edited \(invoice_number",
        number="SQ-2",
        reads=("/v2/invoices/search",),  # a POST that reads
    )


async def test_a_published_invoice_keeps_its_lines_and_cannot_return_to_draft(stack: Stack) -> None:
    client = stack.client()
    _, invoice = await invoiced(client, CUSTOMER, INVOICE)
    changed = {
        **INVOICE,
        "status": "draft",
        "due_on": "2027-01-15",
        "lines": [{**INVOICE["lines"][0], "quantity": "3"}],
    }
    with pytest.raises(ProviderRuleError) as caught:
        await client.update("invoice", invoice.external_id, changed, {})
    assert "lines of a UNPAID invoice cannot change" in str(caught.value)
    assert "cannot return to draft" in str(caught.value)
    # What Square allows was still written.
    assert caught.value.written is not None
    assert caught.value.written.data["due_on"] == "2027-01-15"


async def test_square_changes_a_payment_request_by_its_uid_and_no_published_recipient(
    stack: Stack,
) -> None:
    """Square's UpdateInvoice rules the simulator keeps: a payment request is changed by
    naming its ``uid`` (one without is a new request: a second BALANCE), and a published
    invoice's ``primary_recipient`` cannot be updated."""
    client = stack.client()
    first = await client.create("customer", CUSTOMER, {}, "c1")
    other = await client.create("customer", {**CUSTOMER, "email": "ap@other.example"}, {}, "c2")
    invoice = await client.create("invoice", INVOICE, {"customer_id": first.external_id}, "i")
    due = {"request_type": "BALANCE", "due_date": "2027-01-15"}
    with pytest.raises(web.HTTPBadRequest) as caught:
        stack.sim.update("invoice", invoice.external_id, {"invoice": {"payment_requests": [due]}})
    assert "BALANCE request already" in caught.value.text
    with pytest.raises(web.HTTPBadRequest) as caught:
        stack.sim.update(
            "invoice",
            invoice.external_id,
            {"invoice": {"primary_recipient": {"customer_id": other.external_id}}},
        )
    assert "primary_recipient of a published invoice" in caught.value.text
    [stored] = stack.sim.live("invoice")
    uid = stored["payment_requests"][0]["uid"]
    same = {"primary_recipient": {"customer_id": first.external_id}}
    edit = {"payment_requests": [{**due, "uid": uid}], **same}
    assert stack.sim.update("invoice", invoice.external_id, {"invoice": edit})
    [stored] = stack.sim.live("invoice")
    assert [(r["uid"], r["due_date"]) for r in stored["payment_requests"]] == [(uid, "2027-01-15")]


async def test_a_published_invoices_due_date_is_written_to_its_payment_request(
    stack: Stack,
) -> None:
    """The due date of a published (UNPAID) invoice is Square's to change: the update
    names the BALANCE request's uid and leaves the recipient alone. Before, it sent a
    request without uid (a second BALANCE request, refused) and the recipient again."""
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    updated = await client.update(
        "invoice", invoice.external_id, {**invoice.data, "due_on": "2027-01-15"}, refs
    )
    assert updated.data["due_on"] == "2027-01-15"
    assert updated.data["status"] == "open"
    [stored] = stack.sim.live("invoice")
    assert len(stored["payment_requests"]) == 1


async def test_a_published_invoices_new_recipient_is_squares_rule(stack: Stack) -> None:
    client = stack.client()
    first = await client.create("customer", CUSTOMER, {}, "c1")
    other = await client.create("customer", {**CUSTOMER, "email": "ap@other.example"}, {}, "c2")
    invoice = await client.create("invoice", INVOICE, {"customer_id": first.external_id}, "i")
    with pytest.raises(ProviderRuleError, match="recipient of a UNPAID invoice cannot change"):
        await client.update(
            "invoice",
            invoice.external_id,
            {**invoice.data, "due_on": "2027-01-15"},
            {"customer_id": other.external_id},
        )
    held = await client.fetch("invoice", invoice.external_id)
    # What Square allows was still written.
    assert held.data["due_on"] == "2027-01-15"
    assert held.refs == {"customer_id": first.external_id}


async def test_an_invoice_paid_between_our_read_and_our_write_is_squares_rule(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payment settles the invoice after the client read it UNPAID and before its
    update: Square refuses the edit of the PAID invoice (400), which is its rule, as if
    read PAID, not a provider_4xx (a seed-5 convergence run's dead letter)."""
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    api = type(client.api)
    call = api.call

    async def paid_meanwhile(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        if method == "PUT" and path == f"/v2/invoices/{invoice.external_id}":
            stack.sim.create(
                "payment",
                {
                    "amount_money": {"amount": 27_500, "currency": "AUD"},
                    "invoice_id": invoice.external_id,
                },
            )
        return await call(self, method, path, **kwargs)

    monkeypatch.setattr(api, "call", paid_meanwhile)
    with pytest.raises(ProviderRuleError, match="a PAID invoice cannot be edited") as caught:
        await client.update(
            "invoice", invoice.external_id, {**invoice.data, "due_on": "2027-01-15"}, refs
        )
    assert caught.value.written is not None
    assert caught.value.written.data["status"] == "paid"


async def test_drafts_are_deleted_and_published_invoices_cancelled(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    draft = await client.create(
        "invoice",
        {**INVOICE, "number": "D-1", "status": "draft"},
        {"customer_id": customer.external_id},
        "d",
    )
    sent = await client.create(
        "invoice", {**INVOICE, "number": "S-1"}, {"customer_id": customer.external_id}, "s"
    )
    await client.delete("invoice", draft.external_id)
    await client.delete("invoice", sent.external_id)
    with pytest.raises(NotFoundError):
        await client.fetch("invoice", draft.external_id)
    assert (await client.fetch("invoice", sent.external_id)).data["status"] == "void"


async def test_backfill_pages_through_every_record_with_cursors(stack: Stack) -> None:
    stack.sim.seed(130)
    client = stack.client()
    for kind in ("customer", "invoice", "payment"):
        pages = await every_page(client, kind)  # type: ignore[arg-type]
        assert len({r.external_id for r in records_of(pages)}) == 130, kind
        assert len(pages) >= 2 or kind == "invoice"
    # Payments name the invoice whose order they paid.
    page = await client.list_page("payment", None, None)
    assert all("invoice_id" in r.refs for r in page.records)


async def test_reconcile_lists_only_what_changed_since(stack: Stack) -> None:
    stack.sim.seed(3)
    client = stack.client()
    since = stack.sim.clock.now  # type: ignore[attr-defined]
    [first, *_] = stack.sim.live("customer")
    stack.sim.update("customer", first["id"], {"note": "changed"})
    page = await client.list_page("customer", None, since)
    assert [r.external_id for r in page.records] == [first["id"]]


async def test_a_429_is_transient_and_carries_retry_after(stack: Stack) -> None:
    stack.sim.faults.append(Fault(429, 1, retry_after=2))
    with pytest.raises(ProviderError) as caught:
        await stack.client().fetch("customer", "nope")
    assert caught.value.transient
    assert caught.value.retry_after == 2


async def test_a_bad_request_keeps_squares_message(stack: Stack) -> None:
    with pytest.raises(ProviderError) as caught:
        await stack.client().create("customer", {"notes": "no name or e-mail"}, {}, "k")
    assert caught.value.status == 400
    assert "MISSING_REQUIRED_PARAMETER" in caught.value.provider_message
    assert not caught.value.transient


def test_the_connector_builds_this_client() -> None:
    assert CONNECTOR.api is not None
    assert CONNECTOR.api.make_client is make_client


async def test_a_paid_invoice_told_it_is_paid_by_another_system_is_no_edit(stack: Stack) -> None:
    """The canonical invoice turning paid elsewhere (Shopify's orders/paid) is pushed here
    with its customer reference; Square's invoice, already PAID, keeps the same customer
    (its primary_recipient also holds the name and email Square copied), so nothing was
    asked that Square refuses."""
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    await client.create(
        "payment",
        {"amount": 27_500, "currency": "AUD", "status": "succeeded"},
        {"invoice_id": invoice.external_id},
        "p",
    )
    updated = await client.update(
        "invoice", invoice.external_id, {"status": "paid", "amount_due": 0}, refs
    )
    assert updated.data["status"] == "paid"
