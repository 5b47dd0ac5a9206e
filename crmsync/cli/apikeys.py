"""``crmsync api-keys``: create (shown once), list, rotate and revoke a tenant's keys."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from crmsync.application import apikeys
from crmsync.application.models import ApiKeyCreate, ApiKeyQuery, ApiKeyRotate
from crmsync.cli.admin_common import (
    Column,
    add_common,
    add_group,
    add_id_action,
    add_list_action,
    command,
    emit,
    model,
    run,
    uuid_arg,
)

COLUMNS: list[Column] = [
    ("id", lambda k: k.id),
    ("scope", lambda k: k.scope),
    ("prefix", lambda k: k.key_prefix),
    ("created", lambda k: k.created_at),
    ("expires", lambda k: k.expires_at),
    ("revoked", lambda k: k.revoked_at),
    ("last used", lambda k: k.last_used_at),
]


@command
def _create(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    expires = now + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    body = model(ApiKeyCreate, scope=args.scope, connection=args.connection, expires_at=expires)
    created = run(args, lambda c, ctx: apikeys.create(c, ctx, body, now=now), create_tenant=True)
    code = emit(created, args.json)
    if not args.json:
        print("(the key is shown only now; it is stored as a hash)")
    return code


@command
def _rotate(args: argparse.Namespace) -> int:
    body = model(ApiKeyRotate, overlap_seconds=args.overlap_seconds)
    now = datetime.now(UTC)
    rotated = run(args, lambda c, ctx: apikeys.rotate(c, ctx, args.id, body, now=now))
    return emit(rotated, args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "api-keys", "a tenant's scoped API keys (admin, read, publish)")

    create = actions.add_parser("create", help="create a key; it is printed once")
    add_common(create)
    create.add_argument("--scope", required=True, choices=("admin", "read", "publish"))
    create.add_argument("--connection", type=uuid_arg, help="publish keys: internal connection")
    create.add_argument("--expires-in-days", type=int, help="expiry (default: never)")
    create.set_defaults(handler=_create)

    list_ = add_list_action(
        actions,
        "the tenant's keys (never the keys themselves)",
        apikeys.list_,
        ApiKeyQuery,
        COLUMNS,
        include_revoked="all",
    )
    list_.add_argument("--all", action="store_true", help="include revoked keys")

    add_id_action(
        actions, "show", "a key with its requests per day and when it was last used", apikeys.get
    )
    add_id_action(actions, "revoke", "revoke a key now", apikeys.revoke)

    rotate = actions.add_parser("rotate", help="a new key of the same scope; the old expires")
    add_common(rotate)
    rotate.add_argument("id", type=uuid_arg)
    rotate.add_argument(
        "--overlap-seconds", type=int, help="how long the old key keeps working (default 3600)"
    )
    rotate.set_defaults(handler=_rotate)
