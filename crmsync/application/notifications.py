"""Operational notification endpoints of a tenant (issue 20): register, list, show,
delete, send a test, and see the deliveries.

An endpoint is an HTTPS URL that receives Standard Webhooks messages signed with its own
secret (shown once, stored encrypted). What is sent, and when, is the notifier's
(``crmsync.application.notifier``), run by the outbound service.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from connectors.egress import EgressRefusedError, check_url
from connectors.standard_webhooks.signature import StandardWebhooksScheme
from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import InvalidError, NotFoundError
from crmsync.application.models import (
    NotificationDeliveryOut,
    NotificationDeliveryQuery,
    NotificationEndpointCreate,
    NotificationEndpointCreated,
    NotificationEndpointOut,
    Page,
    PageQuery,
)
from crmsync.application.paging import Listing
from crmsync.application.rows import owned
from crmsync.common.db import Conn

_COLUMNS = "id, url, description, event_types, enabled, created_at"
_DELIVERY_COLUMNS = """
    id, endpoint_id, event_type, payload, status, attempts, next_attempt_at, last_status,
    last_error, created_at, delivered_at
"""


def secret_context(endpoint_id: uuid.UUID) -> str:
    """Associated data binding an endpoint's encrypted secret to the endpoint."""
    return f"notification-secret:{endpoint_id}"


def _out(row: asyncpg.Record) -> NotificationEndpointOut:
    return NotificationEndpointOut(**dict(row))


@audited("notification_endpoint.create")
async def create(
    conn: Conn, ctx: Context, body: NotificationEndpointCreate
) -> NotificationEndpointCreated:
    try:
        check_url(body.url, allow_private=ctx.allow_private_provider_urls)
    except EgressRefusedError as exc:
        raise InvalidError(str(exc), loc="/body/url", msg=str(exc)) from None
    endpoint_id = uuid.uuid4()
    secret = StandardWebhooksScheme().generate_secret()
    row = await conn.fetchrow(
        f"""
        INSERT INTO notification_endpoints
               (id, tenant_id, url, description, event_types, secret_encrypted)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - constant columns
        endpoint_id,
        ctx.tenant_id,
        body.url,
        body.description,
        sorted(set(body.event_types)),
        ctx.keyring.encrypt(secret, secret_context(endpoint_id)),
    )
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return NotificationEndpointCreated(**_out(row).model_dump(), secret=secret)


async def list_(conn: Conn, ctx: Context, query: PageQuery) -> Page[NotificationEndpointOut]:
    listing = Listing(_COLUMNS, "notification_endpoints").where("tenant_id = {}", ctx.tenant_id)
    return await listing.page(conn, query.cursor, query.limit, _out)


async def get(conn: Conn, ctx: Context, endpoint_id: uuid.UUID) -> NotificationEndpointOut:
    row = await owned(
        conn, ctx, "notification_endpoints", _COLUMNS, endpoint_id, what="notification endpoint"
    )
    return _out(row)


@audited("notification_endpoint.delete")
async def delete(conn: Conn, ctx: Context, endpoint_id: uuid.UUID) -> None:
    """Delete the endpoint and its deliveries (pending ones are not sent)."""
    done = await conn.fetchval(
        "DELETE FROM notification_endpoints WHERE id = $1 AND tenant_id = $2 RETURNING id",
        endpoint_id,
        ctx.tenant_id,
    )
    if done is None:
        raise NotFoundError(f"no notification endpoint {endpoint_id}")


@audited("notification_endpoint.test")
async def send_test(
    conn: Conn, ctx: Context, endpoint_id: uuid.UUID, *, now: datetime
) -> NotificationDeliveryOut:
    """Queue a ``test`` message to the endpoint; the notifier sends it within seconds."""
    await get(conn, ctx, endpoint_id)
    row = await conn.fetchrow(
        f"""
        INSERT INTO notification_deliveries (endpoint_id, tenant_id, event_type, payload)
        VALUES ($1, $2, 'test', $3::jsonb)
        RETURNING {_DELIVERY_COLUMNS}
        """,  # noqa: S608 - constant columns
        endpoint_id,
        ctx.tenant_id,
        {"type": "test", "timestamp": now.isoformat(), "data": {"endpoint_id": str(endpoint_id)}},
    )
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns its row
    return NotificationDeliveryOut(**dict(row))


async def deliveries(
    conn: Conn, ctx: Context, endpoint_id: uuid.UUID, query: NotificationDeliveryQuery
) -> Page[NotificationDeliveryOut]:
    """An endpoint's deliveries, newest first: what was sent, what is retrying, what failed."""
    await get(conn, ctx, endpoint_id)
    listing = Listing(_DELIVERY_COLUMNS, "notification_deliveries", newest_first=True)
    listing.where("endpoint_id = {} AND tenant_id = {}", endpoint_id, ctx.tenant_id)
    listing.match(status=query.status)
    return await listing.page(
        conn, query.cursor, query.limit, lambda r: NotificationDeliveryOut(**dict(r))
    )
