"""A simulator and a webhook receiver served on 127.0.0.1, and a walk through every page,
for the connector tests.

Every simulator test runs the production client against a simulator over real HTTP and
checks the webhooks it sends: these are the server and the inbox they share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import aiohttp
import pytest
from aiohttp import web

from connectors.base import Connector, Verified, WebhookRequest
from connectors.http import Auth, NotFoundError, ProviderError, StaticAuth
from connectors.spec import ApiClient, EntityType, Page, RateLimit, RemoteRecord, WebhookParse
from schemas.errors import ProviderRuleError

# A simulator's rate limit far above what a test sends: only a test of the limit itself
# meets the provider's own.
GENEROUS = RateLimit(rate=10_000, per_seconds=1, burst=10_000)


@dataclass(frozen=True)
class Hook:
    """One webhook delivery as the receiver saw it (header names lower-case)."""

    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Inbox:
    """Where a simulator delivers its webhooks (``url``) and what it delivered so far."""

    url: str
    hooks: list[Hook] = field(default_factory=list)


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free local port, as its base URL; stopped on exit."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def inbox(path: str = "/hooks", status: int = 200) -> AsyncIterator[Inbox]:
    """A receiver that keeps every POST to ``path`` and answers ``status``."""
    hooks: list[Hook] = []

    async def receive(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        hooks.append(Hook(str(request.url), headers, await request.read()))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post(path, receive)
    async with served(app) as base_url:
        yield Inbox(base_url + path, hooks)


class _Serving(Protocol):
    def app(self) -> web.Application: ...


Sim = TypeVar("Sim", bound=_Serving)


@asynccontextmanager
async def simulating(
    make: Callable[[str], Sim], path: str = "/hooks", status: int = 200
) -> AsyncIterator[tuple[Sim, str, Inbox, aiohttp.ClientSession]]:
    """The simulator ``make(webhook_url)`` builds, delivering its webhooks to an inbox at
    ``path`` (answering ``status``), served on a free port: the simulator, its base URL,
    the inbox and a client session, all closed on exit."""
    async with inbox(path, status) as hooks:
        sim = make(hooks.url)
        async with served(sim.app()) as base_url, aiohttp.ClientSession() as session:
            yield sim, base_url, hooks, session


@dataclass
class Simulated(Generic[Sim]):
    """What :func:`simulating` serves, kept together: the simulator, its base URL, the
    inbox its webhooks go to and a client session. A test's own harness extends it."""

    sim: Sim
    url: str
    inbox: Inbox
    session: aiohttp.ClientSession

    @property
    def hook_url(self) -> str:
        """Where the simulator delivers its webhooks."""
        return self.inbox.url


Client = TypeVar("Client", bound=ApiClient)


def client_of(
    kind: type[Client],
    make_client: Callable[[aiohttp.ClientSession, str, Auth, Mapping[str, Any]], object],
    session: aiohttp.ClientSession,
    url: str,
    settings: Mapping[str, Any],
    *,
    auth: Auth | None = None,
) -> Client:
    """The connector's ``make_client`` (what the runtime calls) pointed at a simulator at
    ``url``, with the bearer token the simulators take unless ``auth`` is given; it must
    build a ``kind``."""
    client = make_client(session, url, auth or StaticAuth.bearer("sim-token"), settings)
    assert isinstance(client, kind)
    return client


class Delivery(NamedTuple):
    """One webhook as ingest and the processor take it: verified, then parsed."""

    hook: Hook
    verified: Verified
    parsed: WebhookParse


def delivered(
    connector: Connector,
    hooks: Iterable[Hook],
    secret: str,
    settings: Mapping[str, Any],
    *,
    now: float,
    url: str | None = None,
) -> list[Delivery]:
    """Each hook verified with ``secret`` at ``now`` as ingest verifies it (called at
    ``url``, else at the URL the receiver saw), then parsed by the connector's mapper with
    ``settings``; one that does not verify raises the scheme's SignatureError."""
    assert connector.mapper is not None
    out: list[Delivery] = []
    for hook in hooks:
        request = WebhookRequest("POST", url or hook.url, hook.headers, hook.body)
        verified = connector.scheme.verify(request, [secret], now)
        parsed = connector.mapper.parse_webhook(hook.body, hook.headers, settings)
        out.append(Delivery(hook, verified, parsed))
    return out


def writes_logged(requests: Iterable[Mapping[str, Any]], reads: Iterable[str] = ()) -> int:
    """How many of a simulator's logged requests wrote: not GETs, nor POSTs to the ``reads``
    paths (a search posts its query)."""
    skipped = set(reads)
    return sum(1 for r in requests if r["method"] != "GET" and r["path"] not in skipped)


async def a_paid_invoice_asks_nothing_but_refuses_real_edits(
    client: ApiClient,
    requests: Collection[Mapping[str, Any]],
    invoice: RemoteRecord,
    refs: dict[str, str],
    *,
    refused: str,
    number: str,
    reads: Iterable[str] = (),
    once_paid: Callable[[], None] = lambda: None,
) -> None:
    """What a provider that marks an invoice paid itself must do with our edits of it:
    unchanged and open, it is not written (a full replace raced a payment); settled by a
    recorded payment, the derived "paid" edit (status, amount due) writes nothing (it was a
    provider_rule dead letter); a real edit, a new ``number``, is refused (``refused`` matches
    the provider's message). ``requests`` is the simulator's log, ``reads`` the POSTs that read
    (checked after the payment), ``once_paid`` checks the simulator's own paid state."""
    writes = writes_logged(requests)
    await client.update("invoice", invoice.external_id, dict(invoice.data), refs)
    assert writes_logged(requests) == writes
    await client.create(
        "payment",
        {"amount": 27_500, "currency": "AUD", "status": "succeeded", "reference": "EFT"},
        {"invoice_id": invoice.external_id},
        "p",
    )
    once_paid()
    writes = writes_logged(requests)
    derived = {**invoice.data, "status": "paid", "amount_due": 0}
    paid = await client.update("invoice", invoice.external_id, derived, refs)
    assert (paid.data["status"], paid.data["amount_due"]) == ("paid", 0)
    assert writes_logged(requests, reads) == writes
    with pytest.raises(ProviderRuleError, match=refused):
        await client.update("invoice", invoice.external_id, {**derived, "number": number}, refs)


async def a_payment_over_the_balance_is_refused(
    client: ApiClient, invoice: RemoteRecord, owed: int, *, refused: str
) -> None:
    """What a provider that checks a payment against what ``invoice`` still owes (``owed``,
    in minor units of AUD) must do with one cent more: refuse it as its own rule, a
    ProviderRuleError matching ``refused``, not a malformed request (convergence runs found
    these parked as provider_4xx)."""
    too_much = {"amount": owed + 1, "currency": "AUD", "status": "succeeded", "reference": "X"}
    with pytest.raises(ProviderRuleError, match=refused):
        await client.create("payment", too_much, {"invoice_id": invoice.external_id}, "p")


async def invoiced(
    client: ApiClient, customer: Mapping[str, Any], invoice: Mapping[str, Any]
) -> tuple[RemoteRecord, RemoteRecord]:
    """``customer`` and ``invoice`` (of theirs) created through ``client`` (idempotency
    keys "c" and "i"), as the provider holds them."""
    made = await client.create("customer", customer, {}, "c")
    return made, await client.create("invoice", invoice, {"customer_id": made.external_id}, "i")


def one_line_invoice(number: str) -> dict[str, Any]:
    """An open AUD invoice of one taxed line (2 x 125.00, 25.00 tax): what the Square,
    PayPal and Shopify tests push."""
    return {
        "number": number,
        "status": "open",
        "currency": "AUD",
        "issued_on": "2026-12-01",
        "due_on": "2026-12-31",
        "lines": [
            {
                "description": "Blocked drain",
                "quantity": "2",
                "unit_amount": 12_500,
                "tax_amount": 2_500,
            }
        ],
    }


def assert_open_one_line_totals(invoice: RemoteRecord) -> None:
    """The provider's totals of a pushed :func:`one_line_invoice`, read back: still open,
    250.00 + 25.00 tax = 275.00."""
    assert invoice.data["status"] == "open"
    assert (invoice.data["subtotal"], invoice.data["tax"], invoice.data["total"]) == (
        25_000,
        2_500,
        27_500,
    )


async def every_page(
    client: ApiClient, entity_type: EntityType, modified_since: datetime | None = None
) -> list[Page]:
    """Each page of ``client.list_page`` in order, following the cursor to the last one."""
    pages: list[Page] = []
    cursor: str | None = None
    while True:
        page = await client.list_page(entity_type, cursor, modified_since)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


def records_of(pages: list[Page]) -> list[RemoteRecord]:
    return [record for page in pages for record in page.records]


Refused = TypeVar("Refused", bound=ProviderError)


async def deleted(
    client: ApiClient,
    entity_type: EntityType,
    external_id: str,
    refused: type[Refused] = NotFoundError,  # type: ignore[assignment]
) -> Refused:
    """Deletes the record, then fetches it: what the fetch raised (a deleted record is
    gone); the test asserts what the provider says of it."""
    await client.delete(entity_type, external_id)
    with pytest.raises(refused) as caught:
        await client.fetch(entity_type, external_id)
    return caught.value


class TickingClock:
    """A simulator's clock: each reading is one second after the last, so every change has
    its own timestamp."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now
