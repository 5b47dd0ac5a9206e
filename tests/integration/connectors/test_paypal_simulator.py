"""The PayPal client against the PayPal simulator over real HTTP: client-credentials
tokens, invoices and payments, and webhooks verified offline with the certificate the
simulator serves, fetched through the egress rules and cached."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.base import (
    DocumentRefusedError,
    DocumentUnavailableError,
    SignatureError,
    WebhookRequest,
)
from connectors.documents import CachedDocuments
from connectors.egress import provider_session
from connectors.http import (
    AuthError,
    NotFoundError,
    OAuth2Auth,
    OAuthTokens,
    ProviderError,
    refresh_with,
)
from connectors.paypal import CONNECTOR
from connectors.paypal.client import PayPalClient, make_client
from connectors.paypal.simulator import CERT_PATH, PayPalSimulator
from connectors.runtime import client_credentials
from schemas.errors import ProviderRuleError
from tests.integration.connectors.served import (
    Simulated,
    TickingClock,
    a_paid_invoice_asks_nothing_but_refuses_real_edits,
    assert_open_one_line_totals,
    deleted,
    every_page,
    invoiced,
    one_line_invoice,
    records_of,
    simulating,
)

WEBHOOK_ID = "8PT597110X687430LKGECATA"
CLIENT = ("paypal-client-id", "paypal-client-secret")
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@dataclass
class Stack(Simulated[PayPalSimulator]):
    saved: list[OAuthTokens] = field(default_factory=list)

    @property
    def hooks(self) -> list[tuple[dict[str, str], bytes]]:
        return [(hook.headers, hook.body) for hook in self.inbox.hooks]

    def auth(self, secret: str = ":".join(CLIENT)) -> OAuth2Auth:
        async def save(tokens: OAuthTokens) -> None:
            self.saved.append(tokens)

        tokens = client_credentials(secret, "/v1/oauth2/token")
        return OAuth2Auth(tokens, refresh_with(self.session, self.url), save)

    def client(self) -> PayPalClient:
        client = make_client(self.session, self.url, self.auth(), {})
        assert isinstance(client, PayPalClient)
        return client

    @property
    def settings(self) -> dict[str, Any]:
        return {"paypal_trust_anchors": self.sim.trust_anchor_pem.decode()}


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    def make(url: str) -> PayPalSimulator:
        return PayPalSimulator(
            webhook_url=url,
            webhook_secret=WEBHOOK_ID,
            oauth_client=CLIENT,
            clock=TickingClock(START),
        )

    async with simulating(make, "/webhooks/paypal/c1") as (sim, sim_url, hooks, session):
        sim.public_url = sim_url
        yield Stack(sim, sim_url, hooks, session)


CUSTOMER = {"name": "Harbour Plumbing", "email": "office@harbour.example"}
INVOICE = one_line_invoice("PP-100")


async def test_tokens_come_from_the_client_credentials_grant(stack: Stack) -> None:
    client = stack.client()
    await invoiced(client, CUSTOMER, INVOICE)
    assert stack.sim.refresh_calls == 1
    [tokens] = stack.saved
    assert tokens.access_token.startswith("at_")
    assert tokens.refresh_token == ""
    bad = make_client(stack.session, stack.url, stack.auth("paypal-client-id:wrong"), {})
    with pytest.raises(AuthError):
        await bad.fetch("invoice", "INV2-NONE")


async def test_a_customer_is_its_invoices_recipient(stack: Stack) -> None:
    client = stack.client()
    stack.sim.create(
        "customer",
        {"email_address": "office@harbour.example", "name": {"given_name": "Harbour Plumbing"}},
    )
    customer = await client.create("customer", CUSTOMER, {}, "c")
    assert customer.external_id == "office@harbour.example"
    assert list(stack.sim.log.requests) == []  # nothing was sent for it
    invoice = await client.create("invoice", INVOICE, {"customer_id": customer.external_id}, "i")
    assert invoice.refs == {"customer_id": "office@harbour.example"}
    fetched = await client.fetch("customer", "office@harbour.example")
    assert fetched.data["name"] == "Harbour Plumbing"
    with pytest.raises(ProviderRuleError, match="identity"):
        await client.update("customer", customer.external_id, {"email": "new@harbour.example"}, {})


async def test_an_invoice_is_sent_a_payment_recorded_and_removed(stack: Stack) -> None:
    client = stack.client()
    invoice = await client.create(
        "invoice", INVOICE, {"customer_id": "office@harbour.example"}, "i"
    )
    assert_open_one_line_totals(invoice)
    assert invoice.data["lines"] == INVOICE["lines"]
    payment = await client.create(
        "payment",
        {
            "amount": 27_500,
            "currency": "AUD",
            "status": "succeeded",
            "paid_at": "2026-12-02T01:00:00+00:00",
            "reference": "EFT",
        },
        {"invoice_id": invoice.external_id},
        "p",
    )
    assert payment.external_id.startswith(f"{invoice.external_id}:EXTR-")
    assert payment.refs == {"invoice_id": invoice.external_id}
    assert payment.data["reference"] == "EFT"
    paid = await client.fetch("invoice", invoice.external_id)
    assert (paid.data["status"], paid.data["amount_due"]) == ("paid", 0)
    with pytest.raises(ProviderRuleError, match=r"cannot be edited.*\(note\)"):
        await client.update("payment", payment.external_id, {"reference": "x"}, {})
    # What PayPal does not hold of a payment (its customer) is no change to it.
    same = await client.update("payment", payment.external_id, {"customer_id": None}, {})
    assert same.data == payment.data
    await deleted(client, "payment", payment.external_id)
    assert (await client.fetch("invoice", invoice.external_id)).data["status"] == "open"


async def test_a_paid_invoice_takes_the_state_it_holds_and_refuses_only_real_edits(
    stack: Stack,
) -> None:
    """Paid in full by a recorded payment, PayPal marks the invoice MARKED_AS_PAID itself:
    the derived "paid" edit (status, amount due) that follows asks nothing of it, and was a
    provider_rule dead letter."""
    client = stack.client()
    refs = {"customer_id": "office@harbour.example"}
    invoice = await client.create("invoice", INVOICE, refs, "i")

    def marked_paid() -> None:
        assert stack.sim.get("invoice", invoice.external_id)["status"] == "MARKED_AS_PAID"

    await a_paid_invoice_asks_nothing_but_refuses_real_edits(
        client,
        stack.sim.log.requests,
        invoice,
        refs,
        refused="MARKED_AS_PAID invoice cannot be edited",
        number="PP-2",
        once_paid=marked_paid,
    )


async def test_a_repeated_request_id_creates_one_invoice(stack: Stack) -> None:
    client = stack.client()
    first = await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "same")
    second = await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "same")
    assert first.external_id == second.external_id
    assert len(stack.sim.live("invoice")) == 1


async def test_a_duplicate_number_keeps_paypals_words(stack: Stack) -> None:
    client = stack.client()
    await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "one")
    with pytest.raises(ProviderError) as caught:
        await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "two")
    assert caught.value.status == 422
    assert "DUPLICATE_INVOICE_NUMBER" in caught.value.provider_message
    assert "UNPROCESSABLE_ENTITY" in caught.value.provider_message


async def test_sent_invoices_are_cancelled_drafts_deleted_and_neither_returns(stack: Stack) -> None:
    client = stack.client()
    draft = await client.create(
        "invoice",
        {**INVOICE, "number": "D", "status": "draft"},
        {"customer_id": "a@example.com"},
        "d",
    )
    sent = await client.create(
        "invoice", {**INVOICE, "number": "S"}, {"customer_id": "a@example.com"}, "s"
    )
    with pytest.raises(ProviderRuleError, match="cannot return to draft"):
        await client.update("invoice", sent.external_id, {"status": "draft"}, {})
    await client.delete("invoice", draft.external_id)
    await client.delete("invoice", sent.external_id)
    with pytest.raises(NotFoundError):
        await client.fetch("invoice", draft.external_id)
    assert (await client.fetch("invoice", sent.external_id)).data["status"] == "void"


async def test_an_invoices_creation_event_carries_the_draft_it_sent_a_moment_later(
    stack: Stack,
) -> None:
    """As PayPal's: an event carries its resource as it was when the event was made, so the
    creation of an invoice created and sent in one push carries the DRAFT."""
    client = stack.client()
    await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "i")
    await stack.sim.drained()
    events = [json.loads(body) for _, body in stack.hooks]
    assert [(e["event_type"], e["resource"]["status"]) for e in events] == [
        ("INVOICING.INVOICE.CREATED", "DRAFT"),
        ("INVOICING.INVOICE.UPDATED", "UNPAID"),
    ]


async def test_webhooks_verify_with_the_certificate_fetched_once(stack: Stack) -> None:
    client = stack.client()
    invoice = await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "i")
    stack.sim.create("payment", {"capture": True, "invoice_id": invoice.external_id})
    await stack.sim.drained()
    assert len(stack.hooks) >= 3
    session = provider_session(allow_private=True)
    documents = CachedDocuments(session, allow_private=True)
    try:
        kinds = []
        for headers, body in stack.hooks:
            request = WebhookRequest("POST", stack.hook_url, headers, body)
            verified = await CONNECTOR.scheme.verify_fetching(  # type: ignore[attr-defined]
                request, [WEBHOOK_ID], time.time(), stack.settings, documents
            )
            assert verified.provider_event_id.startswith("WH-")
            assert CONNECTOR.mapper is not None
            kinds += [
                i.entity_type for i in CONNECTOR.mapper.parse_webhook(body, headers, {}).items
            ]
        assert documents.fetches == 1
        assert stack.sim.cert_fetches == 1
        assert {"payment", "invoice"} <= set(kinds)
        # Signed for another subscription's webhook id: the same certificate, refused.
        headers, body = stack.hooks[0]
        with pytest.raises(SignatureError, match="bad_signature"):
            await CONNECTOR.scheme.verify_fetching(  # type: ignore[attr-defined]
                WebhookRequest("POST", stack.hook_url, headers, body),
                ["OTHER-WEBHOOK-ID"],
                time.time(),
                stack.settings,
                documents,
            )
    finally:
        await session.close()


async def test_a_certificate_on_a_private_address_is_refused_unless_allowed(stack: Stack) -> None:
    session = provider_session(allow_private=False)
    try:
        with pytest.raises(DocumentRefusedError):
            await CachedDocuments(session, allow_private=False).get(stack.url + CERT_PATH)
    finally:
        await session.close()
    assert stack.sim.cert_fetches == 0


async def test_an_unreachable_certificate_is_a_retry_not_a_refusal() -> None:
    session = provider_session(allow_private=True)
    try:
        with pytest.raises(DocumentUnavailableError):
            await CachedDocuments(session, allow_private=True).get("http://127.0.0.1:9/cert")
    finally:
        await session.close()


async def test_a_refund_is_read_as_its_capture(stack: Stack) -> None:
    client = stack.client()
    invoice = await client.create("invoice", INVOICE, {"customer_id": "a@example.com"}, "i")
    capture = stack.sim.create("payment", {"capture": True, "invoice_id": invoice.external_id})
    stack.sim.update("payment", capture["id"], {"refund": True})
    await stack.sim.drained()
    assert CONNECTOR.mapper is not None
    items = [
        item
        for headers, body in stack.hooks
        for item in CONNECTOR.mapper.parse_webhook(body, headers, {}).items
        if item.entity_type == "payment"
    ]
    assert {i.external_id for i in items} == {capture["id"]}
    page = await client.list_page("payment", None, None)
    [record] = [r for r in page.records if r.external_id == capture["id"]]
    assert record.data["status"] == "refunded"
    assert record.refs == {"invoice_id": invoice.external_id}


async def test_backfill_lists_recipients_invoices_and_payments_by_page(stack: Stack) -> None:
    stack.sim.seed(120)
    client = stack.client()
    for kind in ("customer", "invoice", "payment"):
        pages = await every_page(client, kind)  # type: ignore[arg-type]
        assert len({r.external_id for r in records_of(pages)}) == 120, kind
        assert len(pages) == 2, kind


async def test_a_payment_over_what_the_invoice_owes_or_on_a_paid_one_is_paypals_rule(
    stack: Stack,
) -> None:
    # PayPal answers 422 INVALID_PAYMENT_AMOUNT (over the amount due) or
    # INVALID_INVOICE_STATUS (paid or cancelled): its rules, not a malformed request (a
    # convergence run found the first parked as provider_4xx).
    client = stack.client()
    invoice = await client.create(
        "invoice", INVOICE, {"customer_id": "office@harbour.example"}, "i"
    )
    paid = {"currency": "AUD", "status": "succeeded", "paid_at": "2026-12-02T01:00:00+00:00"}
    refs = {"invoice_id": invoice.external_id}
    with pytest.raises(ProviderRuleError, match="exceeds the amount due"):
        await client.create("payment", {**paid, "amount": 27_501, "reference": "a"}, refs, "p1")
    await client.create("payment", {**paid, "amount": 27_500, "reference": "b"}, refs, "p2")
    with pytest.raises(ProviderRuleError, match="MARKED_AS_PAID"):
        await client.create("payment", {**paid, "amount": 100, "reference": "c"}, refs, "p3")
    assert len(stack.sim.live("payment")) == 1


async def test_an_invoice_paid_between_our_read_and_our_write_is_paypals_rule(
    stack: Stack,
) -> None:
    # The client reads the invoice UNPAID (editable) and PUTs; a payment recorded in the
    # meantime makes PayPal refuse the PUT (422 INVALID_INVOICE_STATUS). The edit was
    # planned on the unpaid state: PayPal's rule, not a malformed request (a convergence
    # run parked it as provider_4xx).
    client = stack.client()
    refs = {"customer_id": "office@harbour.example"}
    invoice = await client.create("invoice", INVOICE, refs, "i")
    read = client._invoice

    async def read_then_paid(invoice_id: str) -> dict[str, Any]:
        current = await read(invoice_id)
        if current.get("status") == "UNPAID":
            stack.sim.create(
                "payment",
                {"invoice_id": invoice_id, "amount": {"currency_code": "AUD", "value": "10.00"}},
                notify=False,
            )
        return current

    client._invoice = read_then_paid  # type: ignore[method-assign]
    with pytest.raises(ProviderRuleError, match="PARTIALLY_PAID invoice cannot be edited"):
        await client.update("invoice", invoice.external_id, {"due_on": "2027-01-15"}, refs)
    assert stack.sim.get("invoice", invoice.external_id)["status"] == "PARTIALLY_PAID"
