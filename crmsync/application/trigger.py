"""Send a connection a correctly signed sample webhook of its provider (``crmsync
trigger``, ``POST /v1/connections/{id}/trigger``), the way ``stripe trigger`` does.

The sample is one of ``connectors.samples`` (the documented payloads the tests use),
made a new delivery (unique event ids, dated now), signed with the connection's current
webhook secret, and POSTed to its webhook URL: it goes through ingest's verification,
Kafka and the processor like any webhook. Thin providers' samples (Xero, QuickBooks,
HubSpot) name a resource the processor then fetches from the provider's API.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from connectors import samples
from crmsync.application import connections
from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, InvalidError, UnavailableError
from crmsync.application.models import TriggerRequest, TriggerResult, WebhookSamples
from crmsync.common import connections as stored
from crmsync.common.db import Conn

# Ingest answers within its produce timeout (2.5 s by default) or says 503.
SEND_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class _Prepared:
    provider: str
    event: str
    url: str
    headers: dict[str, str]
    delivery: samples.Delivery


def catalogue() -> WebhookSamples:
    return WebhookSamples(providers=samples.catalogue())


async def list_samples(conn: Conn, ctx: Context) -> WebhookSamples:
    return catalogue()


@audited("connection.trigger")
async def _prepare(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, body: TriggerRequest, *, now: datetime
) -> _Prepared:
    found = await connections.get(conn, ctx, connection_id)
    if found.webhook_url is None:
        raise InvalidError(
            "an internal connection receives no webhooks",
            loc="/path/connection_id",
            msg="its publishers POST changes to /v1/changes",
        )
    if body.provider is not None and body.provider != found.provider:
        raise InvalidError(
            f"the connection is a {found.provider} connection, not {body.provider}",
            loc="/body/provider",
            msg=f"the connection's provider is {found.provider}",
        )
    try:
        sample = samples.load(found.provider, body.event)
    except samples.UnknownSampleError as exc:
        raise InvalidError(str(exc), loc="/body/event", msg=str(exc)) from None
    secret = await stored.current_webhook_secret(
        conn, ctx.keyring, connection_id, tenant_id=ctx.tenant_id
    )
    if secret is None:
        raise ConflictError("the connection has no current webhook secret to sign with")
    at = now.timestamp()
    delivery = samples.instance(sample, unique=uuid.uuid4().hex, now=at)
    headers = samples.sign(found.provider, secret, delivery, url=found.webhook_url, now=at)
    return _Prepared(found.provider, sample.event, found.webhook_url, headers, delivery)


async def trigger(
    conn: Conn,
    ctx: Context,
    connection_id: uuid.UUID,
    body: TriggerRequest,
    *,
    now: datetime,
    send_to: str | None = None,
) -> TriggerResult:
    """Send the sample; ``send_to`` (the CLI's ``--ingest-url``) replaces the base of the
    URL it is POSTed to, not the URL it is signed for (HubSpot signs the URL)."""
    prepared = await _prepare(conn, ctx, connection_id, body, now=now)
    url = prepared.url
    if send_to is not None:
        url = send_to.rstrip("/") + url.removeprefix(ctx.public_base_url)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT_SECONDS)) as s,
            s.post(
                url, data=prepared.delivery.body, headers=prepared.headers, allow_redirects=False
            ) as response,
        ):
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise UnavailableError(f"ingest at {url} did not answer: {exc}") from None
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = text[:500]
    return TriggerResult(
        provider=prepared.provider,
        event=prepared.event,
        url=url,
        delivery_id=prepared.delivery.delivery_id,
        ingest_status=status,
        ingest_answer=answer,
    )
