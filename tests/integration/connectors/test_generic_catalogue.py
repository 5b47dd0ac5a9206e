"""The catalogue of mapping files (examples/mailchimp, mautic, woocommerce, freshbooks .json), each
round-tripped over real HTTP through the simulator its ``.sim.json`` configures: records
created, fetched, updated, listed page by page and deleted through the GenericClient, and
the webhooks the simulator sends verified by the file's signature scheme and parsed by its
webhook section."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.base import SignatureError, WebhookRequest
from connectors.generic import auth_for, connector_for, load_mapping_file, mapping_settings
from connectors.generic.client import GenericClient, make_client
from connectors.generic.mapping import Handshake, Mapper, form_document
from connectors.generic.simulator import MappingSimulator, load_simulated
from connectors.http import ProviderError
from connectors.spec import RemoteRecord, WebhookItem
from tests.integration.connectors.served import (
    GENEROUS,
    Hook,
    deleted,
    every_page,
    inbox,
    records_of,
    served,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "connectors" / "generic" / "examples"
SECRET = "catalogue-webhook-secret"


@dataclass
class Running:
    name: str
    sim: MappingSimulator
    base_url: str
    session: aiohttp.ClientSession
    settings: dict[str, Any]
    received: list[Hook] = field(default_factory=list)

    def client(self, page_size: int | None = None) -> GenericClient:
        settings = copy.deepcopy(self.settings)
        if page_size is not None:
            for entity in settings["generic_mapping"]["entities"].values():
                if "pagination" in entity:
                    entity["pagination"]["page_size"] = page_size
        mapping = self.sim.mapping
        return make_client(
            self.session, self.base_url, auth_for(mapping, token=self.sim.api_token), settings
        )

    async def created_customer(
        self, stored: Callable[[dict[str, Any]], tuple[Any, ...]], held: tuple[Any, ...]
    ) -> tuple[GenericClient, RemoteRecord]:
        """CUSTOMER created through a client: it reads back as sent and is fetched the same,
        and the provider holds ``held`` where ``stored`` reads its record. The client and
        the created record."""
        client = self.client()
        created = await client.create("customer", CUSTOMER, {}, idempotency_key="k1")
        assert _fields(created, CUSTOMER) == CUSTOMER
        assert stored(self.sim.get("customer", created.external_id)) == held
        assert await client.fetch("customer", created.external_id) == created
        return client, created

    async def webhook_items(self) -> list[WebhookItem]:
        """Every webhook received so far, verified as ingest would and parsed in order."""
        await self.sim.drained()
        connector = connector_for(self.sim.signature, self.sim.mapping)
        items: list[WebhookItem] = []
        for hook in self.received:
            url, body, headers = hook.url, hook.body, hook.headers
            connector.scheme.verify(
                WebhookRequest("POST", url, headers, body), [SECRET], time.time()
            )
            kept = {k: v for k, v in headers.items() if k in connector.kept_headers}
            items.extend(Mapper().parse_webhook(body, kept, self.settings).items)
        return items


async def _start(name: str, **options: Any) -> AsyncIterator[Running]:
    async with inbox(status=204) as hooks:
        simulator = load_simulated(EXAMPLES / f"{name}.json")
        options = {"webhook_secret": SECRET, **options}
        sim = simulator(webhook_url=hooks.url, rate_limit=GENEROUS, **options)
        signature, mapping = load_mapping_file(EXAMPLES / f"{name}.json")
        settings = {
            "generic": signature.model_dump(mode="json"),
            "generic_mapping": mapping_settings(mapping),
        }
        async with served(sim.app()) as base_url, aiohttp.ClientSession() as session:
            yield Running(name, sim, base_url, session, settings, hooks.hooks)


@pytest.fixture
async def woocommerce() -> AsyncIterator[Running]:
    async for running in _start("woocommerce"):
        yield running


@pytest.fixture
async def mautic() -> AsyncIterator[Running]:
    async for running in _start("mautic"):
        yield running


@pytest.fixture
async def mailchimp() -> AsyncIterator[Running]:
    async for running in _start("mailchimp"):
        yield running


CUSTOMER = {
    "name": "Amelia Mary Kelly",
    "email": "amelia@kelly.example",
    "phone": "+61 7 3555 0101",
    "company": "Kelly Plumbing",
}


def _fields(record: RemoteRecord, names: Any) -> dict[str, Any]:
    return {name: record.data.get(name) for name in names}


# --- WooCommerce -------------------------------------------------------------------------------


async def test_woocommerce_customer_round_trip_with_signed_full_webhooks(
    woocommerce: Running,
) -> None:
    # Written as WooCommerce keeps it: a first and a last name, the rest on the billing address.
    client, created = await woocommerce.created_customer(
        lambda stored: (stored["first_name"], stored["last_name"], stored["billing"]["company"]),
        ("Amelia", "Mary Kelly", "Kelly Plumbing"),
    )

    updated = await client.update("customer", created.external_id, {"phone": None}, {})
    assert updated.data["phone"] is None
    assert updated.updated_at > created.updated_at

    items = await woocommerce.webhook_items()
    assert [(i.external_id, i.op) for i in items] == [(created.external_id, "upsert")] * 2
    assert [i.record for i in items] == [created, updated]

    gone = await deleted(client, "customer", created.external_id, ProviderError)
    assert gone.status == 404


async def test_woocommerce_order_amounts_arrive_as_exact_minor_units(woocommerce: Running) -> None:
    customer = woocommerce.sim.create("customer", woocommerce.sim.seed_object("customer", 1))
    body = woocommerce.sim.seed_object("invoice", 1)
    guest = woocommerce.sim.create("invoice", body)
    owned = woocommerce.sim.create("invoice", {**body, "customer_id": customer["id"]})
    client = woocommerce.client()
    fetched = await client.fetch("invoice", str(guest["id"]))
    assert _fields(fetched, ("number", "status", "currency", "total", "tax", "issued_on")) == {
        "number": "101",
        "status": "paid",
        "currency": "AUD",
        "total": 3685,
        "tax": 335,
        "issued_on": "2024-03-14",
    }
    assert fetched.data["lines"] == [
        {"description": "Tap washer kit", "quantity": "2", "unit_amount": 875, "tax_amount": 175},
        {"description": "Call-out fee", "quantity": "1", "unit_amount": 1600, "tax_amount": 160},
    ]
    # A guest's order names no customer; a customer's order names the customer's id.
    assert fetched.refs == {}
    assert (await client.fetch("invoice", str(owned["id"]))).refs == {
        "customer_id": str(customer["id"])
    }
    items = await woocommerce.webhook_items()
    invoice_items = [i for i in items if i.entity_type == "invoice"]
    assert invoice_items[0].record == fetched

    await client.delete("invoice", str(guest["id"]))
    trashed = await client.fetch("invoice", str(guest["id"]))
    assert (trashed.deleted, trashed.data["status"]) == (True, "void")


async def test_woocommerce_lists_every_page(woocommerce: Running) -> None:
    woocommerce.sim.seed(5)
    customers = records_of(await every_page(woocommerce.client(page_size=2), "customer"))
    assert [r.external_id for r in customers] == ["1", "2", "3", "4", "5"]
    assert [r.data["email"] for r in customers][:2] == [
        "customer0@example.com",
        "customer1@example.com",
    ]


async def test_woocommerce_webhook_with_a_forged_signature_is_refused(woocommerce: Running) -> None:
    woocommerce.sim.create("customer", woocommerce.sim.seed_object("customer", 0))
    await woocommerce.sim.drained()
    hook = woocommerce.received[0]
    url, body, headers = hook.url, hook.body, hook.headers
    scheme = connector_for(woocommerce.sim.signature).scheme
    with pytest.raises(SignatureError):
        scheme.verify(WebhookRequest("POST", url, headers, body + b" "), [SECRET], time.time())


# --- Mautic ------------------------------------------------------------------------------------


async def test_mautic_contact_round_trip_with_grouped_thin_webhooks(mautic: Running) -> None:
    client, created = await mautic.created_customer(
        lambda stored: (stored["fields"]["all"]["firstname"], stored["fields"]["all"]["lastname"]),
        ("Amelia", "Mary Kelly"),
    )
    updated = await client.update("customer", created.external_id, {"company": None}, {})
    assert updated.data["company"] is None
    await client.delete("customer", created.external_id)

    items = await mautic.webhook_items()
    assert [(i.external_id, i.op, i.record) for i in items] == [
        (created.external_id, "upsert", None),
        (created.external_id, "upsert", None),
        (created.external_id, "delete", None),
    ]
    assert len({i.event_id for i in items}) == 3


async def test_mautic_lists_keyed_contacts_by_offset(mautic: Running) -> None:
    mautic.sim.seed(5)
    client = mautic.client(page_size=2)
    contacts = records_of(await every_page(client, "customer"))
    assert [r.external_id for r in contacts] == ["1", "2", "3", "4", "5"]
    assert contacts[0].data["address"] == {
        "line1": "0 Logan Rd",
        "line2": None,
        "city": "Woolloongabba",
        "region": "Queensland",
        "postal_code": "4102",
    }
    assert contacts[0].data["phone"] is None  # Mautic's "" for a field never set
    requested = [e["path"] for e in mautic.sim.log.requests]
    assert requested == ["/api/contacts"] * 3


async def test_mautic_empty_listing_is_an_empty_page(mautic: Running) -> None:
    page = await mautic.client().list_page("customer", None, None)
    assert (page.records, page.next_cursor) == ((), None)


# --- Mailchimp ---------------------------------------------------------------------------------


async def test_mailchimp_member_round_trip_with_url_token_form_webhooks(mailchimp: Running) -> None:
    client = mailchimp.client()
    created = await client.create("customer", CUSTOMER | {"company": None}, {}, idempotency_key="k")
    assert created.external_id == "amelia@kelly.example"
    assert created.data["name"] == "Amelia Mary Kelly"
    stored = mailchimp.sim.get("customer", created.external_id)
    assert stored["status"] == "subscribed"  # set on create only

    mailchimp.sim.update("customer", created.external_id, {"status": "unsubscribed"})
    updated = await client.update("customer", created.external_id, {"phone": "+61 400 000 000"}, {})
    assert updated.data["phone"] == "+61 400 000 000"
    # An update never sends the create-only status back: the unsubscribe stands.
    assert mailchimp.sim.get("customer", created.external_id)["status"] == "unsubscribed"

    items = await mailchimp.webhook_items()
    assert [(i.external_id, i.op, i.record) for i in items] == [
        ("amelia@kelly.example", "upsert", None)
    ] * 3
    hook = mailchimp.received[0]
    url, body, headers = hook.url, hook.body, hook.headers
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert body.startswith(b"data%5Bemail%5D=amelia%40kelly.example")
    scheme = connector_for(mailchimp.sim.signature).scheme
    with pytest.raises(SignatureError):
        scheme.verify(WebhookRequest("POST", url.split("?")[0], headers, body), [SECRET], 0)

    await client.delete("customer", created.external_id)
    archived = await client.fetch("customer", created.external_id)
    assert archived.deleted is True


async def test_mailchimp_lists_members_by_offset_and_changed_since(mailchimp: Running) -> None:
    mailchimp.sim.seed(3)
    members = records_of(await every_page(mailchimp.client(page_size=2), "customer"))
    assert [m.external_id for m in members] == [f"member{n}@example.com" for n in range(3)]
    assert members[0].data["address"]["country"] == "AU"
    latest = members[-1].updated_at
    page = await mailchimp.client().list_page("customer", None, latest)
    assert [m.external_id for m in page.records] == ["member2@example.com"]


# --- FreshBooks --------------------------------------------------------------------------------


@pytest.fixture
async def freshbooks() -> AsyncIterator[Running]:
    async for running in _start("freshbooks"):
        yield running


def _at(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


async def test_freshbooks_callback_delivers_only_once_its_code_went_back(
    freshbooks: Running,
) -> None:
    sim, mapper = freshbooks.sim, Mapper()
    values = sim.register_callback()
    assert values == {"account_id": "xazq5", "callback_id": "1"}
    sim.create("customer", sim.seed_object("customer", 0))  # before the code went back
    await sim.drained()
    (hook,) = freshbooks.received  # the handshake alone: an unverified callback gets nothing
    assert hook.body.startswith(b"name=callback.verify&verifier=")
    handshake = mapper.verification(hook.body, hook.headers, freshbooks.settings)
    assert handshake is not None
    assert handshake.values == values
    assert handshake.verifier not in repr(handshake)  # the signing secret once accepted
    # A handshake is no record: a webhook parse that meets one ignores it.
    assert mapper.parse_webhook(hook.body, {}, freshbooks.settings).ignored == 1
    assert mapper.verification(b"name=client.update&object_id=1", {}, freshbooks.settings) is None

    client = freshbooks.client()
    with pytest.raises(ProviderError) as caught:
        await client.confirm(Handshake(verifier="forged", values=values))
    assert caught.value.status == 400
    assert sim.callback_verified is False
    await client.confirm(handshake)
    confirmed = sim.log.requests[-1]
    assert (confirmed["method"], confirmed["path"]) == (
        "PUT",
        "/events/account/xazq5/events/callbacks/1",
    )
    assert sim.callback_verified is True

    created = sim.create("customer", sim.seed_object("customer", 1))
    await sim.drained()
    hook = freshbooks.received[-1]
    assert form_document(hook.body.decode()) == {
        "name": "client.create",
        "object_id": str(created["id"]),
    }
    scheme = connector_for(sim.signature).scheme
    request = WebhookRequest("POST", hook.url, hook.headers, hook.body)
    # Signed with the code that went back, not with any secret set beforehand.
    assert scheme.verify(request, [handshake.verifier], time.time()).secret_index == 0
    with pytest.raises(SignatureError):
        scheme.verify(request, [SECRET], time.time())


async def test_freshbooks_client_round_trip_with_timeless_thin_webhooks_and_soft_delete(
    freshbooks: Running,
) -> None:
    client, created = await freshbooks.created_customer(
        lambda stored: (stored["fname"], stored["lname"], stored["organization"]),
        ("Amelia", "Mary Kelly", "Kelly Plumbing"),
    )
    updated = await client.update("customer", created.external_id, {"company": None}, {})
    assert updated.data["company"] is None
    again = await client.update("customer", created.external_id, {"company": None}, {})
    assert again.updated_at > updated.updated_at

    await client.delete("customer", created.external_id)  # PUT {"client": {"vis_state": 1}}
    assert freshbooks.sim.log.requests[-1]["method"] == "PUT"
    gone = await client.fetch("customer", created.external_id)
    assert gone.deleted is True

    items = await freshbooks.webhook_items()
    assert [(i.external_id, i.op, i.record) for i in items] == [
        (created.external_id, "upsert", None),
        (created.external_id, "upsert", None),
        (created.external_id, "upsert", None),
        (created.external_id, "upsert", None),  # client.delete: fetched, it reads as deleted
    ]
    assert form_document(freshbooks.received[-1].body.decode())["name"] == "client.delete"
    # No time in the form: the delete is fetched to learn when (FreshBooks keeps the client,
    # vis_state 1); the two updates' notices are byte for byte the same, so each is keyed
    # by its receipt.
    assert {i.occurred_at for i in items} == {None}
    assert items[1].event_id == items[2].event_id
    assert all(i.per_receipt for i in items)


@pytest.mark.parametrize(
    ("now", "written"),
    [
        (datetime(2024, 7, 1, 16, 0, tzinfo=UTC), "2024-07-01 12:00:00"),  # EDT, UTC-4
        (datetime(2024, 1, 15, 17, 0, tzinfo=UTC), "2024-01-15 12:00:00"),  # EST, UTC-5
    ],
    ids=["summer", "winter"],
)
async def test_freshbooks_times_are_us_eastern_with_daylight_saving(
    now: datetime, written: str
) -> None:
    async for running in _start("freshbooks", clock=_at(now)):
        created = await running.client().create("customer", CUSTOMER, {}, idempotency_key="k")
        assert running.sim.get("customer", created.external_id)["updated"] == written
        assert created.updated_at == now
        # The changed-since filter is a day in the same zone (FreshBooks' updated_min).
        page = await running.client().list_page("customer", None, now - timedelta(hours=1))
        assert [r.external_id for r in page.records] == [created.external_id]
        assert running.sim.log.requests[-1]["query"]["search[updated_min]"] == written[:10]


async def test_freshbooks_invoice_and_payment_money_is_exact(freshbooks: Running) -> None:
    sim, client = freshbooks.sim, freshbooks.client()
    customer = sim.create("customer", sim.seed_object("customer", 0))
    seeded = sim.create("invoice", {**sim.seed_object("invoice", 1), "customerid": customer["id"]})
    fetched = await client.fetch("invoice", str(seeded["id"]))
    assert _fields(
        fetched, ("number", "status", "currency", "issued_on", "due_on", "total", "amount_due")
    ) == {
        "number": "00001",
        "status": "open",
        "currency": "CAD",
        "issued_on": "2024-03-14",
        "due_on": "2024-04-13",
        "total": 22600,
        "amount_due": 22600,
    }
    assert fetched.data["lines"] == [
        {"description": "Labour", "quantity": "2", "unit_amount": 9500},
        {"description": "Call-out fee", "quantity": "1", "unit_amount": 1000},
    ]
    assert fetched.refs == {"customer_id": str(customer["id"])}

    invoice = {
        "number": "INV-7",
        "currency": "CAD",
        "issued_on": "2024-05-01",
        "lines": [{"description": "Tap washer kit", "quantity": "3", "unit_amount": 875}],
    }
    made = await client.create(
        "invoice", invoice, {"customer_id": str(customer["id"])}, idempotency_key="i"
    )
    stored = sim.get("invoice", made.external_id)
    assert stored["lines"] == [
        {"name": "Tap washer kit", "qty": "3", "unit_cost": {"amount": "8.75"}}
    ]
    assert (stored["customerid"], stored["create_date"]) == (str(customer["id"]), "2024-05-01")

    payment = {
        "amount": 10050,
        "currency": "CAD",
        "method": "Check",
        "paid_at": "2024-03-20T04:00:00+00:00",
        "reference": "cheque 41",
    }
    paid = await client.create(
        "payment", payment, {"invoice_id": made.external_id}, idempotency_key="p"
    )
    assert sim.get("payment", paid.external_id)["amount"] == {"amount": "100.50", "code": "CAD"}
    assert sim.get("payment", paid.external_id)["date"] == "2024-03-20"
    assert _fields(paid, payment) == payment | {"paid_at": "2024-03-20T04:00:00Z"}
    assert (paid.refs, paid.data["status"]) == ({"invoice_id": made.external_id}, "succeeded")

    await client.delete("payment", paid.external_id)
    await sim.drained()
    assert form_document(freshbooks.received[-1].body.decode())["name"] == "payment.delete"
    assert (await client.fetch("payment", paid.external_id)).deleted is True


async def test_freshbooks_lists_clients_page_by_page(freshbooks: Running) -> None:
    freshbooks.sim.seed(5)
    clients = records_of(await every_page(freshbooks.client(page_size=2), "customer"))
    assert [r.external_id for r in clients] == ["1", "2", "3", "4", "5"]
    assert clients[0].data["address"] == {
        "line1": "0 Sandgate Rd",
        "line2": None,
        "city": "Toronto",
        "region": "Ontario",
        "postal_code": "M6P 3T1",
    }


async def test_freshbooks_callback_is_registered_again_through_the_control_route(
    freshbooks: Running,
) -> None:
    # `crmsync simulate` prints it: a handshake that never reached ingest is sent again.
    async with freshbooks.session.post(f"{freshbooks.base_url}/_sim/callback") as answer:
        assert answer.status == 200
        assert (await answer.json())["registered"] == {"account_id": "xazq5", "callback_id": "1"}
    await freshbooks.sim.drained()
    (hook,) = freshbooks.received
    assert hook.body.startswith(b"name=callback.verify&verifier=")
    assert freshbooks.sim.callback_verified is False
