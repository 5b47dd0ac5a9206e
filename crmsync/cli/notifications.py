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
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_group,
    add_id_action,
    add_list_action,
    call,
    command,
    emit,
    model,
    uuid_arg,
)

_ID = "notification endpoint id"
COLUMNS: list[Column] = [
    ("id", lambda e: e.id),
    ("url", lambda e: e.url),
    ("events", lambda e: ",".join(e.event_types) or "all"),
    ("enabled", lambda e: e.enabled),
    ("created", lambda e: e.created_at),
]
DELIVERY_COLUMNS: list[Column] = [
    ("id", lambda d: d.id),
    ("type", lambda d: d.event_type),
    ("status", lambda d: d.status),
    ("attempts", lambda d: d.attempts),
    ("last status", lambda d: d.last_status),
    ("next attempt", lambda d: d.next_attempt_at if d.status == "pending" else None),
    ("error", lambda d: d.last_error),
]


@command
def _add(args: argparse.Namespace) -> int:
    body = model(
        NotificationEndpointCreate,
        url=args.url,
        description=args.description,
        event_types=args.events.split(",") if args.events else None,
    )
    created = call(args, "createNotificationEndpoint", body=body)
    code = emit(created, args.json)
    if not args.json:
        print("(the secret is shown only now; verify each message's webhook-signature with it)")
    return code


@command
def _deliveries(args: argparse.Namespace) -> int:
    query = model(
        NotificationDeliveryQuery, status=args.status, limit=args.limit, cursor=args.cursor
    )
    page = call(args, "listNotificationDeliveries", endpoint_id=args.id, query=query)
    return emit(page, args.json, DELIVERY_COLUMNS)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "notifications", "endpoints that receive operational notifications")
    add = actions.add_parser("add", help="register an endpoint; its secret is printed once")
    add_common(add)
    add.add_argument("--url", required=True, help="where to POST (https)")
    add.add_argument("--description", help="what it is for, shown in lists")
    add.add_argument(
        "--events",
        help="comma-separated: connection.needs_reauth, connection.circuit_open, "
        "connection.dead_letters, sync_job.failed, quota.reached, test (default: all)",
    )
    add.set_defaults(handler=_add)
    add_list_action(
        actions, "the tenant's endpoints", "listNotificationEndpoints", PageQuery, COLUMNS
    )
    add_id_action(actions, "show", "an endpoint", "getNotificationEndpoint", id_help=_ID)
    add_id_action(
        actions,
        "delete",
        "delete an endpoint and its deliveries",
        "deleteNotificationEndpoint",
        id_help=_ID,
    )
    add_id_action(
        actions,
        "test",
        "queue a test message to an endpoint",
        "testNotificationEndpoint",
        id_help=_ID,
    )
    deliveries = actions.add_parser("deliveries", help="an endpoint's deliveries, newest first")
    add_common(deliveries, page=True)
    deliveries.add_argument("id", type=uuid_arg, help=_ID)
    deliveries.add_argument(
        "--status", choices=("pending", "delivered", "failed"), help="only those in this state"
    )
    deliveries.set_defaults(handler=_deliveries)
