"""The QuickBooks client against the QuickBooks simulator, over real HTTP.

The simulator runs on a real aiohttp server and posts its webhooks to a small receiver
app; the client is the production one. Concurrent edits are made the way a QuickBooks user
would make them: in the company, between the client's read and its write.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from connectors.http import NotFoundError, ProviderError, StaleVersionError, StaticAuth
from connectors.quickbooks import CONNECTOR
from connectors.quickbooks.client import QuickBooksClient
from connectors.quickbooks.simulator import QuickBooksSimulator, WebhookFormat
from connectors.spec import WebhookItem
from tests.integration.connectors.served import (
    Inbox,
    deleted,
    delivered,
    every_page,
    inbox,
    records_of,
    served,
)

SECRET = "intuit-verifier-token-for-tests"
PAGE_SIZE = 2
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The simulator's wall clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Harness:
    sim: QuickBooksSimulator
    client: QuickBooksClient
    clock: Clock
    receiver: Inbox
    session: aiohttp.ClientSession
    base_url: str
    after_get: list[Callable[[str], None]] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, Any]:
        return {"realm_id": self.sim.realm_id, "home_currency": "USD"}

    async def webhook_items(self) -> list[WebhookItem]:
        """Every webhook received so far, verified as ingest verifies it, then parsed."""
        await self.sim.drained()
        items: list[WebhookItem] = []
        for _, _, parsed in delivered(
            CONNECTOR,
            self.receiver.hooks,
            SECRET,
            self.settings,
            now=time.time(),
            url=self.receiver.url,
        ):
            items.extend(parsed.items)
        return items

    async def inject(self, status: int, retry_after: float | None = None) -> None:
        """Queue a fault through the simulator's control API."""
        body: dict[str, Any] = {"status": status, "count": 1}
        if retry_after is not None:
            body["retry_after"] = retry_after
        async with self.session.post(f"{self.base_url}/_sim/faults", json=body) as response:
            assert response.status == 200

    def requests(self) -> list[tuple[str, str, int]]:
        return [(r["method"], r["path"], r.get("status", 0)) for r in self.sim.log.requests]

    def user_edits_once(self, entity_type: str, fields: dict[str, Any]) -> None:
        """A QuickBooks user edits ``fields`` of the record the client reads next, once,
        between that read and the client's write (so the write carries a stale
        SyncToken)."""
        edited: list[str] = []

        def edit(record_id: str) -> None:
            if not edited:
                edited.append(record_id)
                self.sim.update(entity_type, record_id, fields)

        self.after_get.append(edit)


async def harness_for(webhook_format: WebhookFormat) -> AsyncIterator[Harness]:
    async with inbox("/hooks/quickbooks") as receiver:
        clock = Clock()
        sim = QuickBooksSimulator(
            webhook_url=receiver.url,
            webhook_secret=SECRET,
            webhook_format=webhook_format,
            clock=clock,
        )
        harness_box: list[Harness] = []

        async def on_request_end(
            _session: aiohttp.ClientSession, _context: SimpleNamespace, params: Any
        ) -> None:
            # A QuickBooks user editing the record right after the client read it.
            if params.method == "GET" and "/query" not in params.url.path:
                for edit in list(harness_box[0].after_get):
                    edit(params.url.path.rsplit("/", 1)[-1])

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        async with (
            served(sim.app()) as base_url,
            aiohttp.ClientSession(trace_configs=[trace]) as session,
        ):
            settings = {"realm_id": sim.realm_id, "home_currency": "USD", "page_size": PAGE_SIZE}
            assert CONNECTOR.api is not None
            client = CONNECTOR.api.make_client(
                session, base_url, StaticAuth.bearer("sim-token"), settings
            )
            harness = Harness(sim, client, clock, receiver, session, base_url)
            harness_box.append(harness)
            yield harness


@pytest.fixture
async def qbo() -> AsyncIterator[Harness]:
    async for harness in harness_for("classic"):
        yield harness


@pytest.fixture(params=["classic", "cloudevents"])
async def qbo_any_format(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    async for harness in harness_for(request.param):
        yield harness


CUSTOMER = {
    "name": "Kookies by Kathy",
    "email": "Kathy@Kookies.example",
    "phone": "(650) 555-7745",
    "company": "Kookies by Kathy",
    "address": {
        "line1": "789 Sugar Lane",
        "city": "Middlefield",
        "region": "CA",
        "postal_code": "94303",
        "country": "US",
    },
    "notes": "Prefers email",
}


async def test_customer_lifecycle_create_fetch_update_list_delete(qbo: Harness) -> None:
    created = await qbo.client.create("customer", CUSTOMER, {}, "idem-1")
    assert created.data["email"] == "kathy@kookies.example"
    assert created.version == "0"
    assert created.updated_at == START

    qbo.clock.advance(60)
    fetched = await qbo.client.fetch("customer", created.external_id)
    assert fetched.data == created.data

    updated = await qbo.client.update(
        "customer", created.external_id, {"phone": "(650) 555-0000", "notes": None}, {}
    )
    assert updated.version == "1"
    assert updated.updated_at == START + timedelta(seconds=60)
    assert updated.data["phone"] == "(650) 555-0000"
    assert updated.data["notes"] is None
    assert updated.data["email"] == "kathy@kookies.example"  # sparse: untouched

    await qbo.client.delete("customer", created.external_id)
    gone = await qbo.client.fetch("customer", created.external_id)
    # QuickBooks keeps customers forever: deleting one makes it inactive.
    assert gone.deleted is True
    assert qbo.sim.store["customer"][created.external_id]["Active"] is False


async def test_invoice_delete_makes_fetch_not_found(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "idem-c")
    data = {
        "number": "INV-7",
        "currency": "USD",
        "issued_on": "2025-03-01",
        "due_on": "2025-03-31",
        "lines": [{"description": "Cookies", "quantity": "3", "unit_amount": 10}],
        "tax": 3,
    }
    invoice = await qbo.client.create("invoice", data, {"customer_id": customer.external_id}, "i")
    assert (invoice.data["subtotal"], invoice.data["tax"], invoice.data["total"]) == (30, 3, 33)
    assert invoice.refs == {"customer_id": customer.external_id}
    stored = qbo.sim.store["invoice"][invoice.external_id]
    assert stored["Line"][0]["Amount"] == 0.3  # 3 x 0.10, exactly, on the wire

    await deleted(qbo.client, "invoice", invoice.external_id)
    with pytest.raises(NotFoundError):
        await qbo.client.delete("invoice", invoice.external_id)


async def test_payment_lowers_the_invoice_balance(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    lines = [{"quantity": "1", "unit_amount": 10_000}]
    invoice = await qbo.client.create("invoice", {"currency": "USD", "lines": lines}, refs, "i")
    payment = await qbo.client.create(
        "payment",
        {
            "amount": 2_550,
            "currency": "USD",
            "paid_at": "2025-03-02T00:00:00Z",
            "reference": "CHK1",
        },
        refs | {"invoice_id": invoice.external_id},
        "p",
    )
    assert payment.data["amount"] == 2_550
    assert payment.refs == refs | {"invoice_id": invoice.external_id}
    after = await qbo.client.fetch("invoice", invoice.external_id)
    assert (after.data["amount_due"], after.data["status"]) == (7_450, "open")
    await qbo.client.delete("payment", payment.external_id)
    restored = await qbo.client.fetch("invoice", invoice.external_id)
    assert restored.data["amount_due"] == 10_000


async def test_a_payment_that_names_only_its_invoice_is_made_for_the_invoice_s_customer(
    qbo: Harness,
) -> None:
    """QuickBooks refuses a Payment without CustomerRef ("Required parameter CustomerRef is
    missing"), and a canonical payment often names only its invoice (Xero's, Ascora's, one
    made through /v1/changes): the convergence test had 9 such dead letters. The customer
    is the invoice's, as QuickBooks holds it."""
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    other = await qbo.client.create("customer", {**CUSTOMER, "name": "Other Co"}, {}, "o")
    refs = {"customer_id": customer.external_id}
    lines = [{"quantity": "1", "unit_amount": 10_000}]
    invoice = await qbo.client.create("invoice", {"currency": "USD", "lines": lines}, refs, "i")
    second = await qbo.client.create(
        "invoice", {"currency": "USD", "lines": lines}, {"customer_id": other.external_id}, "j"
    )
    paid = {"amount": 2_550, "currency": "USD", "paid_at": "2025-03-02T00:00:00Z"}

    payment = await qbo.client.create("payment", paid, {"invoice_id": invoice.external_id}, "p")
    assert payment.refs == refs | {"invoice_id": invoice.external_id}
    after = await qbo.client.fetch("invoice", invoice.external_id)
    assert after.data["amount_due"] == 7_450

    # Moved to another customer's invoice: the payment follows that invoice's customer.
    moved = await qbo.client.update(
        "payment", payment.external_id, paid, {"invoice_id": second.external_id}
    )
    assert moved.refs == {"customer_id": other.external_id, "invoice_id": second.external_id}


async def test_list_pages_oldest_first_with_modified_since(qbo: Harness) -> None:
    qbo.sim.seed(3)  # customers 1..3, as of START
    qbo.clock.advance(3600)
    later = qbo.clock.now
    await qbo.client.create("customer", CUSTOMER, {}, "new")
    qbo.clock.advance(1)
    await qbo.client.update("customer", "1", {"notes": "called back"}, {})

    pages = await every_page(qbo.client, "customer")
    ids = [record.external_id for record in records_of(pages)]
    assert len(pages) >= 2
    assert ids == ["2", "3", "4", "1"]  # oldest change first

    recent = await qbo.client.list_page("customer", None, later)
    assert [r.external_id for r in recent.records] == ["4", "1"]
    assert recent.next_cursor == "3"
    rest = await qbo.client.list_page("customer", recent.next_cursor, later)
    assert (rest.records, rest.next_cursor) == ((), None)


async def test_list_includes_inactive_customers_as_deleted(qbo: Harness) -> None:
    created = await qbo.client.create("customer", CUSTOMER, {}, "c")
    await qbo.client.delete("customer", created.external_id)
    page = await qbo.client.list_page("customer", None, None)
    assert [(r.external_id, r.deleted) for r in page.records] == [(created.external_id, True)]


async def test_create_with_the_same_idempotency_key_creates_once(qbo: Harness) -> None:
    first = await qbo.client.create("customer", CUSTOMER, {}, "same-key")
    second = await qbo.client.create("customer", CUSTOMER, {}, "same-key")
    assert first.external_id == second.external_id
    assert len(qbo.sim.store["customer"]) == 1


async def test_webhooks_verify_and_parse_into_the_changes_made(qbo_any_format: Harness) -> None:
    qbo = qbo_any_format
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    qbo.clock.advance(5)
    await qbo.client.update("customer", customer.external_id, {"notes": "VIP"}, {})
    lines = [{"quantity": "1", "unit_amount": 500}]
    refs = {"customer_id": customer.external_id}
    invoice = await qbo.client.create("invoice", {"currency": "USD", "lines": lines}, refs, "i")
    qbo.clock.advance(5)
    await qbo.client.delete("invoice", invoice.external_id)

    items = await qbo.webhook_items()
    assert [(i.entity_type, i.external_id, i.op) for i in items] == [
        ("customer", customer.external_id, "upsert"),
        ("customer", customer.external_id, "upsert"),
        ("invoice", invoice.external_id, "upsert"),
        ("invoice", invoice.external_id, "delete"),
    ]
    assert all(i.record is None for i in items)
    assert [i.occurred_at for i in items] == [
        START,
        START + timedelta(seconds=5),
        START + timedelta(seconds=5),
        START + timedelta(seconds=10),
    ]
    assert len({i.event_id for i in items}) == 4
    first_body = qbo.receiver.hooks[0].body
    if qbo.sim.webhook_format == "classic":
        assert first_body.startswith(b'{"eventNotifications":')
    else:
        assert first_body.startswith(b'[{"specversion":"1.0"')


async def test_hydrating_a_webhook_item_fetches_the_changed_record(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    (item,) = await qbo.webhook_items()
    record = await qbo.client.fetch(item.entity_type, item.external_id)
    assert record.data == customer.data
    assert record.updated_at == item.occurred_at


async def test_concurrent_edit_between_read_and_write_is_retried(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    qbo.user_edits_once("customer", {"Notes": "edited by a user"})
    updated = await qbo.client.update("customer", customer.external_id, {"phone": "1-800"}, {})

    posts = [r for r in qbo.requests() if r[0] == "POST"][1:]  # after the create
    assert [status for _, _, status in posts] == [400, 200]
    gets = [r for r in qbo.requests() if r[0] == "GET"]
    assert len(gets) == 2  # read, stale answer, read again, write
    assert updated.version == "2"
    assert updated.data["phone"] == "1-800"
    assert updated.data["notes"] == "edited by a user"  # the user's edit survives


async def test_two_stale_answers_in_a_row_raise_stale_version(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")

    def user_edits_every_time(record_id: str) -> None:
        qbo.clock.advance(1)
        qbo.sim.update("customer", record_id, {"Notes": f"edit at {qbo.clock.now}"})

    qbo.after_get.append(user_edits_every_time)
    with pytest.raises(StaleVersionError) as caught:
        await qbo.client.update("customer", customer.external_id, {"phone": "1-800"}, {})
    assert caught.value.status == 400
    assert not caught.value.transient
    assert "5010" in caught.value.body_excerpt
    posts = [r for r in qbo.requests() if r[0] == "POST"][1:]
    assert [status for _, _, status in posts] == [400, 400]


async def test_an_update_at_an_expected_sync_token_is_never_written_over_an_edit(
    qbo: Harness,
) -> None:
    """Outbound read the record (issue 17) and writes at the SyncToken it read: an edit
    made since is QuickBooks' 5010, and the client neither reads again nor writes again
    (that second write overwrote the edit)."""
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    assert customer.version is not None
    qbo.sim.update("customer", customer.external_id, {"Notes": "edited by a user"})
    with pytest.raises(StaleVersionError):
        await qbo.client.update(
            "customer",
            customer.external_id,
            {"phone": "1-800"},
            {},
            expected_version=customer.version,
        )
    after = qbo.requests()[1:]  # after the create
    assert [(method, status) for method, _, status in after] == [("POST", 400)]
    now = await qbo.client.fetch("customer", customer.external_id)
    assert (now.data["notes"], now.data["phone"]) == ("edited by a user", CUSTOMER["phone"])
    written = await qbo.client.update(
        "customer", customer.external_id, {"phone": "1-800"}, {}, expected_version=now.version
    )
    assert (written.data["notes"], written.data["phone"]) == ("edited by a user", "1-800")


async def test_stale_delete_is_retried_too(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    refs = {"customer_id": customer.external_id}
    lines = [{"quantity": "1", "unit_amount": 500}]
    invoice = await qbo.client.create("invoice", {"currency": "USD", "lines": lines}, refs, "i")
    qbo.user_edits_once("invoice", {"PrivateNote": "checked"})
    await qbo.client.delete("invoice", invoice.external_id)
    assert invoice.external_id in qbo.sim.deleted["invoice"]


async def test_injected_429_surfaces_with_retry_after(qbo: Harness) -> None:
    await qbo.inject(429, retry_after=7)
    with pytest.raises(ProviderError) as caught:
        await qbo.client.fetch("customer", "1")
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.transient


async def test_injected_500_is_transient(qbo: Harness) -> None:
    await qbo.inject(500)
    with pytest.raises(ProviderError) as caught:
        await qbo.client.list_page("invoice", None, None)
    assert caught.value.status == 500
    assert caught.value.transient


async def test_injected_400_is_not_transient(qbo: Harness) -> None:
    await qbo.inject(400)
    with pytest.raises(ProviderError) as caught:
        await qbo.client.fetch("customer", "1")
    assert caught.value.status == 400
    assert not caught.value.transient


async def test_validation_fault_is_a_permanent_error_with_the_fault_body(qbo: Harness) -> None:
    lines = [{"quantity": "1", "unit_amount": 500}]
    with pytest.raises(ProviderError) as caught:
        await qbo.client.create("invoice", {"currency": "USD", "lines": lines}, {}, "no-cust")
    assert type(caught.value) is ProviderError
    assert (caught.value.status, caught.value.transient) == (400, False)
    assert '"code": "2020"' in caught.value.body_excerpt


async def test_duplicate_display_name_is_refused(qbo: Harness) -> None:
    await qbo.client.create("customer", CUSTOMER, {}, "first")
    with pytest.raises(ProviderError) as caught:
        await qbo.client.create("customer", CUSTOMER, {}, "second")
    assert "6240" in caught.value.body_excerpt


async def test_unknown_id_is_not_found(qbo: Harness) -> None:
    with pytest.raises(NotFoundError) as caught:
        await qbo.client.fetch("payment", "404")
    assert caught.value.status == 400  # QuickBooks says "Object Not Found" with a 400


async def test_voided_invoice_arrives_as_a_void_upsert_and_reads_as_void(qbo: Harness) -> None:
    customer = await qbo.client.create("customer", CUSTOMER, {}, "c")
    lines = [{"quantity": "2", "unit_amount": 1_250}]
    refs = {"customer_id": customer.external_id}
    invoice = await qbo.client.create("invoice", {"currency": "USD", "lines": lines}, refs, "i")
    token = qbo.sim.store["invoice"][invoice.external_id]["SyncToken"]
    url = f"{qbo.base_url}/v3/company/{qbo.sim.realm_id}/invoice"
    async with qbo.session.post(
        url,
        params={"operation": "void", "minorversion": "75"},
        json={"Id": invoice.external_id, "SyncToken": token},
        headers={"Authorization": "Bearer sim-token"},
    ) as response:
        assert response.status == 200
    items = await qbo.webhook_items()
    assert (items[-1].external_id, items[-1].op) == (invoice.external_id, "upsert")
    voided = await qbo.client.fetch("invoice", invoice.external_id)
    assert (voided.deleted, voided.data["status"], voided.data["total"]) == (False, "void", 0)
