"""A simulator and a webhook receiver served on 127.0.0.1, and a walk through every page,
for the connector tests.

Every simulator test runs the production client against a simulator over real HTTP and
checks the webhooks it sends: these are the server and the inbox they share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from aiohttp import web

from connectors.base import Connector, Verified, WebhookRequest
from connectors.spec import ApiClient, EntityType, Page, RemoteRecord, WebhookParse


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


class TickingClock:
    """A simulator's clock: each reading is one second after the last, so every change has
    its own timestamp."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now
