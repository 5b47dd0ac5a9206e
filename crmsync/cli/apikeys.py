"""``crmsync api-keys``: create (shown once), list, rotate and revoke a tenant's keys."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from crmsync.application.models import ApiKeyCreate, ApiKeyQuery, ApiKeyRotate
from crmsync.cli import admin_common as cli

COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "scope",
    "prefix=key_prefix",
    "created=created_at",
    "expires=expires_at",
    "revoked=revoked_at",
    "last used=last_used_at",
)


@cli.command
def _create(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    expires = now + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    connection = cli.optional_connection_id(args, args.connection)
    body = cli.model(ApiKeyCreate, scope=args.scope, connection=connection, expires_at=expires)
    created = cli.call(args, "createApiKey", body=body, create_tenant=True)
    return cli.emit_shown_once(
        created, args.json, "(the key is shown only now; it is stored as a hash)"
    )


@cli.command
def _rotate(args: argparse.Namespace) -> int:
    body = cli.model(ApiKeyRotate, overlap_seconds=args.overlap_seconds)
    return cli.emit(cli.call(args, "rotateApiKey", key_id=args.id, body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(sub, "api-keys", "a tenant's scoped API keys (admin, read, publish)")

    create = cli.add_action(actions, "create", "create a key; it is printed once", _create)
    create.add_argument(
        "--scope",
        required=True,
        choices=("admin", "read", "publish"),
        help="admin: every admin call; read: reading only; publish: ingest's /v1/changes",
    )
    create.add_argument(
        "--connection",
        type=cli.connection_arg,
        help="publish keys: their internal connection (id or TENANT/NAME)",
    )
    create.add_argument("--expires-in-days", type=int, help="expiry (default: never)")

    list_ = cli.add_list_action(
        actions,
        "the tenant's keys (never the keys themselves)",
        "listApiKeys",
        ApiKeyQuery,
        COLUMNS,
        include_revoked="all",
    )
    list_.add_argument("--all", action="store_true", help="include revoked keys")

    cli.add_id_action(
        actions,
        "show",
        "a key with its requests per day and when it was last used",
        "getApiKey",
        id_help="API key id",
    )
    cli.add_id_action(actions, "revoke", "revoke a key now", "revokeApiKey", id_help="API key id")

    rotate = cli.add_action(
        actions, "rotate", "a new key of the same scope; the old expires", _rotate
    )
    rotate.add_argument("id", type=cli.uuid_arg, help="API key id")
    rotate.add_argument(
        "--overlap-seconds", type=int, help="how long the old key keeps working (default 3600)"
    )
