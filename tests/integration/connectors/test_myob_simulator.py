"""The MYOB client against the MYOB simulator over real HTTP: CRUD, RowVersion, OData
pages and the modified-since filter, MYOB's errors (its 403 rate limit included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from connectors.http import (
    AuthError,
    RateLimitedError,
    StaleVersionError,
    StaticAuth,
)
from connectors.myob.client import MyobClient, make_client
from connectors.myob.simulator import (
    SIM_COMPANY_FILE_ID,
    SIM_FRE_UID,
    SIM_GST_UID,
    SIM_ITEM_UID,
    MyobSimulator,
)
from connectors.spec import RateLimit
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import (
    TickingClock,
    a_payment_over_the_balance_is_refused,
    client_of,
    deleted,
    every_page,
    invoiced,
    records_of,
    served,
)

API_KEY = "myob-developer-key"
SETTINGS: dict[str, Any] = {
    "myob_company_file_id": SIM_COMPANY_FILE_ID,
    "myob_api_key": API_KEY,
    "myob_item_uid": SIM_ITEM_UID,
    "myob_tax_code_uid": SIM_GST_UID,
    "myob_free_tax_code_uid": SIM_FRE_UID,
    "myob_page_size": 2,
}
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Stack:
    sim: MyobSimulator
    url: str
    session: aiohttp.ClientSession

    def client(self, **settings: Any) -> MyobClient:
        return client_of(MyobClient, make_client, self.session, self.url, {**SETTINGS, **settings})


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    sim = MyobSimulator(api_key=API_KEY, clock=TickingClock(START))
    async with served(sim.app()) as url, aiohttp.ClientSession() as session:
        yield Stack(sim, url, session)


CUSTOMER = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "0400 000 001"}
INVOICE = {
    "number": "INV-1",
    "currency": "AUD",
    "issued_on": "2026-12-01",
    "due_on": "2026-12-15",
    "lines": [
        {"description": "Labour", "quantity": "2", "unit_amount": 5000, "tax_amount": 1000},
        {"description": "Parts", "quantity": "1", "unit_amount": 2550, "tax_amount": 0},
    ],
}


async def test_customer_invoice_and_payment_round_trip(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "k1")
    assert customer.data["name"] == "Ada Lovelace"
    assert customer.data["email"] == "ada@example.com"
    assert customer.version is not None
    invoice = await client.create("invoice", INVOICE, {"customer_id": customer.external_id}, "k2")
    assert invoice.refs == {"customer_id": customer.external_id}
    assert invoice.data["subtotal"] == 12550
    assert invoice.data["tax"] == 1000
    assert invoice.data["total"] == 13550
    assert invoice.data["amount_due"] == 13550
    assert invoice.data["status"] == "open"
    assert invoice.data["due_on"] == "2026-12-15"
    assert [line["tax_amount"] for line in invoice.data["lines"]] == [1000, 0]
    assert [line["quantity"] for line in invoice.data["lines"]] == ["2", "1"]
    payment = await client.create(
        "payment",
        {"amount": 13550, "currency": "AUD", "status": "succeeded", "reference": "EFT 1"},
        {"invoice_id": invoice.external_id, "customer_id": customer.external_id},
        "k3",
    )
    assert payment.refs["invoice_id"] == invoice.external_id
    assert payment.data["amount"] == 13550
    paid = await client.fetch("invoice", invoice.external_id)
    assert paid.data["status"] == "paid"
    assert paid.data["amount_due"] == 0
    assert paid.version != invoice.version  # applying a payment is a change of the invoice


async def test_update_puts_the_whole_record_at_its_row_version(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create(
        "customer", {**CUSTOMER, "address": {"line1": "1 Main St", "city": "Sydney"}}, {}, "k"
    )
    updated = await client.update(
        "customer", customer.external_id, {"email": "new@example.com"}, {}
    )
    assert updated.data["email"] == "new@example.com"
    # A PUT replaces the record: what the change did not name is kept, not cleared.
    assert updated.data["address"]["line1"] == "1 Main St"
    assert updated.data["phone"] == "0400 000 001"
    assert updated.version != customer.version


async def test_a_stale_row_version_is_read_again_once(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "k")
    original_one = stack.sim._one
    stack.sim._one = lambda e, uid: _stale_copy(stack.sim, original_one(e, uid))  # type: ignore[method-assign]
    with pytest.raises(StaleVersionError, match="changed again"):
        await client.update("customer", customer.external_id, {"email": "x@example.com"}, {})
    puts = [r for r in stack.sim.log.requests if r["method"] == "PUT"]
    assert [r["status"] for r in puts] == [409, 409]


async def test_an_update_at_an_expected_row_version_is_not_tried_again(stack: Stack) -> None:
    """Outbound read the record first (issue 17) and writes at the RowVersion it read: an
    edit made since is MYOB's 409, raised at once; a second PUT at a fresh RowVersion
    would overwrite that edit."""
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "k")
    assert customer.version is not None
    await client.update("customer", customer.external_id, {"phone": "0400 000 009"}, {})
    with pytest.raises(StaleVersionError):
        await client.update(
            "customer",
            customer.external_id,
            {"email": "x@example.com"},
            {},
            expected_version=customer.version,
        )
    puts = [r for r in stack.sim.log.requests if r["method"] == "PUT"]
    assert [r["status"] for r in puts] == [200, 409]
    now = await client.fetch("customer", customer.external_id)
    assert (now.data["phone"], now.data["email"]) == ("0400 000 009", CUSTOMER["email"])


def _stale_copy(sim: MyobSimulator, obj: dict[str, Any]) -> dict[str, Any]:
    """Hand the GET the record, then move its RowVersion on as another writer would."""
    shown = dict(obj)
    sim._stamp(obj)
    return shown


async def test_backfill_pages_through_every_record_oldest_change_first(stack: Stack) -> None:
    stack.sim.seed(5)
    pages = await every_page(stack.client(), "customer")
    assert [len(p.records) for p in pages] == [2, 2, 1]
    stamps = [r.updated_at for r in records_of(pages)]
    assert stamps == sorted(stamps)
    assert len({r.external_id for r in records_of(pages)}) == 5


async def test_modified_since_lists_only_what_changed(stack: Stack) -> None:
    stack.sim.seed(3)
    client = stack.client()
    # The next change is stamped one tick after the last seeded one.
    since = stack.sim.clock.now + timedelta(seconds=1)  # type: ignore[attr-defined]
    changed = await client.create("customer", CUSTOMER, {}, "k")
    pages = await every_page(client, "customer", since)
    assert [r.external_id for r in records_of(pages)] == [changed.external_id]


async def test_inactive_cards_are_listed_as_deleted(stack: Stack) -> None:
    client = stack.client()
    customer = await client.create("customer", CUSTOMER, {}, "k")
    await client.delete("customer", customer.external_id)
    [record] = records_of(await every_page(client, "customer"))
    assert record.deleted


async def test_payment_edits_are_refused_by_myob_rules(stack: Stack) -> None:
    client = stack.client()
    customer, invoice = await invoiced(client, CUSTOMER, INVOICE)
    payment = await client.create(
        "payment",
        {"amount": 500, "currency": "AUD", "status": "succeeded"},
        {"invoice_id": invoice.external_id, "customer_id": customer.external_id},
        "k3",
    )
    with pytest.raises(ProviderRuleError, match="cannot be edited"):
        await client.update("payment", payment.external_id, {"amount": 600}, {})
    # An invoice with a payment applied cannot be deleted: MYOB's rule (400
    # TransactionHasPayments), parked once as provider_rule with MYOB's words, not a
    # provider_4xx (a 1,000-op convergence run found it there).
    with pytest.raises(ProviderRuleError, match="payments applied") as caught:
        await client.delete("invoice", invoice.external_id)
    assert caught.value.reason == "provider_rule"
    assert "(TransactionHasPayments)" in caught.value.detail
    assert invoice.external_id in caught.value.detail
    await client.delete("payment", payment.external_id)
    await deleted(client, "invoice", invoice.external_id)


async def test_rate_limit_403_is_a_rate_limit_not_an_auth_failure(stack: Stack) -> None:
    stack.sim.myob_bucket = None
    limited = MyobSimulator(
        api_key=API_KEY, clock=TickingClock(START), rate_limit=RateLimit(1, 3600, 1)
    )
    async with served(limited.app()) as url:
        client = make_client(stack.session, url, StaticAuth.bearer("sim-token"), SETTINGS)
        await client.list_page("customer", None, None)
        with pytest.raises(RateLimitedError) as caught:
            await client.list_page("customer", None, None)
    assert caught.value.status == 403
    assert caught.value.transient
    assert caught.value.retry_after == 1.0
    assert "per second rate limit" in caught.value.provider_message


async def test_a_wrong_developer_key_is_an_auth_error(stack: Stack) -> None:
    client = stack.client(myob_api_key="not-the-key")
    with pytest.raises(AuthError) as caught:
        await client.list_page("customer", None, None)
    assert not isinstance(caught.value, RateLimitedError)
    assert "API key is missing or inactive" in caught.value.provider_message


async def test_voiding_is_refused_after_the_rest_of_the_change_is_written(stack: Stack) -> None:
    client = stack.client()
    _, invoice = await invoiced(client, CUSTOMER, INVOICE)
    with pytest.raises(ProviderRuleError, match="no void invoices") as caught:
        await client.update("invoice", invoice.external_id, {"status": "void", "number": "X"}, {})
    assert caught.value.written is not None
    assert caught.value.written.data["number"] == "X"
    assert (await client.fetch("invoice", invoice.external_id)).data["number"] == "X"


async def test_a_users_edit_of_one_address_field_keeps_the_others(stack: Stack) -> None:
    card = stack.sim.create(
        "customer",
        {
            "IsIndividual": True,
            "LastName": "Hopper",
            "Addresses": [{"Location": 1, "Email": "grace@example.com", "Phone1": "1"}],
        },
    )
    stack.sim.update("customer", card["UID"], {"Addresses": [{"Location": 1, "Phone1": "2"}]})
    [address] = stack.sim.live("customer")[0]["Addresses"]
    assert address == {"Location": 1, "Email": "grace@example.com", "Phone1": "2"}


async def test_a_payment_naming_only_its_invoice_is_recorded_for_that_invoices_customer(
    stack: Stack,
) -> None:
    # A canonical payment names its invoice alone (its refs are {"invoice_id": …}), but
    # MYOB requires a CustomerPayment's Customer: the convergence run found every payment
    # pushed to MYOB refused, "Customer None not found".
    client = stack.client()
    customer, invoice = await invoiced(client, CUSTOMER, INVOICE)
    payment = await client.create(
        "payment",
        {"amount": 550, "currency": "AUD", "status": "succeeded", "reference": "EFT 2"},
        {"invoice_id": invoice.external_id},
        "k3",
    )
    assert payment.refs["invoice_id"] == invoice.external_id
    assert stack.sim.store["payment"][payment.external_id]["Customer"] == {
        "UID": customer.external_id
    }


async def test_a_payment_over_what_the_invoice_owes_is_a_provider_rule_refusal(
    stack: Stack,
) -> None:
    # MYOB answers 400 AmountAppliedExceedsBalance.
    client = stack.client()
    _, invoice = await invoiced(client, CUSTOMER, INVOICE)
    await a_payment_over_the_balance_is_refused(client, invoice, 13_550, refused="balance due")
    assert not stack.sim.live("payment")
