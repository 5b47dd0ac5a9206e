"""``crmsync notifications``: a tenant's endpoints for operational notifications
(``/v1/notification-endpoints``): add (the signing secret is shown once), list, show,
delete, test, and the deliveries of one endpoint."""

from __future__ import annotations

import argparse

from crmsync.application.models import (
    NotificationDeliveryQuery,
    NotificationEndpointCreate,
    PageQuery,
)
from crmsync.cli import admin_common as cli

_ID = "notification endpoint id"
COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "url",
    ("events", lambda e: ",".join(e.event_types) or "all"),
    "enabled",
    "created=created_at",
)
DELIVERY_COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "type=event_type",
    "status",
    "attempts",
    "last status=last_status",
    ("next attempt", lambda d: d.next_attempt_at if d.status == "pending" else None),
    "error=last_error",
)


@cli.command
def _add(args: argparse.Namespace) -> int:
    body = cli.model(
        NotificationEndpointCreate,
        url=args.url,
        description=args.description,
        event_types=args.events.split(",") if args.events else None,
    )
    created = cli.call(args, "createNotificationEndpoint", body=body)
    return cli.emit_shown_once(
        created,
        args.json,
        "(the secret is shown only now; verify each message's webhook-signature with it)",
    )


@cli.command
def _deliveries(args: argparse.Namespace) -> int:
    query = cli.model(
        NotificationDeliveryQuery, status=args.status, limit=args.limit, cursor=args.cursor
    )
    page = cli.call(args, "listNotificationDeliveries", endpoint_id=args.id, query=query)
    return cli.emit(page, args.json, DELIVERY_COLUMNS)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(
        sub, "notifications", "endpoints that receive operational notifications"
    )
    add = cli.add_action(actions, "add", "register an endpoint; its secret is printed once", _add)
    add.add_argument("--url", required=True, help="where to POST (https)")
    add.add_argument("--description", help="what it is for, shown in lists")
    add.add_argument(
        "--events",
        help="comma-separated: connection.needs_reauth, connection.circuit_open, "
        "connection.dead_letters, sync_job.failed, quota.reached, test (default: all)",
    )
    cli.add_list_action(
        actions, "the tenant's endpoints", "listNotificationEndpoints", PageQuery, COLUMNS
    )
    cli.add_id_action(actions, "show", "an endpoint", "getNotificationEndpoint", id_help=_ID)
    cli.add_id_action(
        actions,
        "delete",
        "delete an endpoint and its deliveries",
        "deleteNotificationEndpoint",
        id_help=_ID,
    )
    cli.add_id_action(
        actions,
        "test",
        "queue a test message to an endpoint",
        "testNotificationEndpoint",
        id_help=_ID,
    )
    deliveries = cli.add_action(
        actions, "deliveries", "an endpoint's deliveries, newest first", _deliveries, page=True
    )
    deliveries.add_argument("id", type=cli.uuid_arg, help=_ID)
    deliveries.add_argument(
        "--status", choices=("pending", "delivered", "failed"), help="only those in this state"
    )
