"""``crmsync connections``: ``add`` creates a tenant (if new) and a connection (in remote
mode: a connection of the API key's tenant, through ``POST /v1/connections``); the other
actions (list, show, update, disable, enable, delete, rotate-secret, set-credentials,
health, pause, resume) run the admin API's operations. A connection is named by its id or
by TENANT/NAME."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
from pydantic import ValidationError

from connectors.egress import EgressRefusedError, check_url
from connectors.generic import (
    CATALOGUE,
    GenericSchemeConfig,
    MappingFileError,
    load_mapping_file,
    mapping_settings,
)
from connectors.generic.signature import CONFIGURING
from connectors.registry import PROVIDERS, WEBHOOK_PROVIDERS, connector
from crmsync.application import audit_trail
from crmsync.application.connections import first_secret
from crmsync.application.models import (
    ConnectionCreate,
    ConnectionCreated,
    ConnectionQuery,
    ConnectionUpdate,
    CredentialsIn,
    HandshakeWindow,
    PauseRequest,
    ResumeRequest,
    SecretRotate,
    TenantOut,
)
from crmsync.cli import admin_common as cli
from crmsync.cli.backend import Backend, is_remote, reach_stack, run
from crmsync.common.apikeys import ensure_tenant
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import connect
from crmsync.common.quotas import QuotaExceededError, check_connection_room
from crmsync.common.settings import ConfigError, ProviderCallSettings, parse_settings
from crmsync.localstack.status import StackError
from crmsync.settings.ingest import IngestSettings

TENANT_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@cli.command
def add(args: argparse.Namespace) -> int:
    """``connections add``: in this process, or through the admin API in remote mode."""
    if is_remote(args):
        return _add_remote(args)
    if args.tenant is None:
        raise cli.CommandError(
            "--tenant is required (the tenant is created if new)", cli.EXIT_INVALID
        )
    return _add_local(
        provider=args.provider,
        tenant=args.tenant,
        name=args.name,
        webhook_secret=args.webhook_secret,
        api_key=args.provider_api_key,
        base_url=args.base_url,
        generic_config=args.generic_config,
        as_json=args.json,
    )


def _add_remote(args: argparse.Namespace) -> int:
    config: Any = None
    if args.provider in CATALOGUE:
        raise cli.CommandError(
            f"--provider {args.provider} brings a mapping file, which only local mode applies; "
            "through the API, add a generic connection and set its mapping with "
            "`connections update --field-mapping`",
            cli.EXIT_INVALID,
        )
    if args.generic_config is not None:
        try:
            config = json.loads(args.generic_config.read_bytes())
        except (OSError, ValueError) as exc:
            raise cli.CommandError(
                f"--generic-config {args.generic_config}: {exc}", cli.EXIT_INVALID
            ) from None
        if isinstance(config, dict) and "signature" in config:
            raise cli.CommandError(
                "--generic-config: a whole mapping file is applied only in local mode; through "
                "the API give the signature scheme, then `connections update --field-mapping`",
                cli.EXIT_INVALID,
            )
    credentials = None
    if args.provider_api_key is not None:
        credentials = {"type": "api_key", "token": args.provider_api_key}
    body = cli.model(
        ConnectionCreate,
        provider=args.provider,
        name=args.name,
        webhook_secret=args.webhook_secret,
        base_url=args.base_url,
        credentials=credentials,
        generic_config=config,
    )

    async def create(b: Backend) -> tuple[TenantOut, ConnectionCreated]:
        return await b.call("getTenant", {}), await b.call("createConnection", {"body": body})

    tenant, created = run(args, create)
    out: dict[str, Any] = {
        "id": str(created.id),
        "provider": created.provider,
        "tenant": tenant.slug,
        "tenant_id": str(tenant.id),
        "name": created.name,
    }
    if created.provider == "internal":
        out["changes_url"] = created.changes_url
        out["api_key"] = created.api_key
    elif created.provider not in WEBHOOK_PROVIDERS:
        out["polled_every_seconds"] = poll_seconds(created.provider)
    else:
        out["webhook_url"] = created.webhook_url
        out["webhook_secret"] = created.webhook_secret
    _show(out, as_json=args.json)
    return 0


def _add_local(
    *,
    provider: str,
    tenant: str,
    name: str | None,
    webhook_secret: str | None,
    api_key: str | None,
    base_url: str | None,
    generic_config: Path | None,
    as_json: bool,
) -> int:
    if provider in CATALOGUE:
        # A provider we ship a mapping file for: a generic connection made from that file.
        if generic_config is not None:
            raise StackError(f"--provider {provider} brings its own mapping: drop --generic-config")
        name = name or provider
        generic_config = CATALOGUE[provider]
        provider = "generic"
    if provider not in PROVIDERS:
        known = ", ".join((*PROVIDERS, *CATALOGUE))
        raise StackError(f"unknown provider {provider!r}; one of {known}")
    if not TENANT_SLUG.match(tenant):
        raise StackError("tenant must be a slug: lower-case letters, digits and '-', 1-63 long")
    if base_url is not None:
        allow = parse_settings(ProviderCallSettings).allow_private_provider_urls
        try:
            check_url(base_url, allow_private=allow)  # as the admin API's create does
        except EgressRefusedError as exc:
            raise StackError(f"--base-url: {exc}") from None
    settings = parse_settings(IngestSettings)
    try:
        keyring = KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
    config, mapping = _generic_config(provider, generic_config)
    secret, handshakes_until = first_secret(
        provider, webhook_secret, config, _generic_settings(config, mapping), now=datetime.now(UTC)
    )

    async def store() -> CreatedConnection:
        conn = await reach_stack(connect(settings.database_url))
        try:
            async with conn.transaction():
                await check_connection_room(conn, await ensure_tenant(conn, tenant))
                created = await create_connection(
                    conn,
                    keyring,
                    tenant=tenant,
                    provider=provider,
                    name=name or provider,
                    webhook_secret=secret,
                    base_url=base_url,
                    api_credentials=api_key,
                    settings=_generic_settings(config, mapping),
                    handshakes_until=handshakes_until,
                )
                await audit_trail.record(
                    conn,
                    created.tenant_id,
                    audit_trail.cli_actor(),
                    "connection.create",
                    target_id=created.id,
                    change=audit_trail.redact(
                        {
                            "provider": provider,
                            "name": name or provider,
                            "base_url": base_url,
                            "webhook_secret": webhook_secret,
                            "api_key": api_key,
                            **_generic_settings(config, mapping),
                        }
                    ),
                )
            return created
        except asyncpg.UniqueViolationError:
            raise StackError(
                f"tenant {tenant} already has a connection named {name or provider!r}; pass --name"
            ) from None
        except asyncpg.PostgresError as exc:
            raise StackError(
                f"cannot store the connection ({exc}); was `crmsync migrate` run?"
            ) from None
        finally:
            await conn.close()

    token_param = config.token_param if config and config.kind == "url_token" else None
    try:
        created = asyncio.run(store())
    except QuotaExceededError as exc:
        print(f"crmsync: {exc}", file=sys.stderr)
        return cli.EXIT_CONFLICT
    _print(
        created,
        settings.ingest_public_base_url,
        as_json=as_json,
        token_param=token_param,
    )
    return 0


def _generic_settings(
    config: GenericSchemeConfig | None, mapping: dict[str, Any] | None
) -> dict[str, Any]:
    if config is None:
        return {}
    out: dict[str, Any] = {"generic": config.model_dump(mode="json")}
    if mapping is not None:
        out["generic_mapping"] = mapping
    return out


def _generic_config(
    provider: str, path: Path | None
) -> tuple[GenericSchemeConfig | None, dict[str, Any] | None]:
    """The scheme of a generic connection, and its mapping when FILE is a whole mapping file
    (an object with "signature"), else only the scheme as before."""
    if provider != "generic":
        return None, None
    if path is None:
        raise StackError("a generic connection needs --generic-config FILE (JSON)")
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--generic-config {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and "signature" in document:
        try:
            signature, mapping = load_mapping_file(path)
        except MappingFileError as exc:
            raise ConfigError(f"--generic-config {exc}") from None
        return signature, mapping_settings(mapping)
    try:
        return GenericSchemeConfig.model_validate_json(text, context=CONFIGURING), None
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'scheme'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"--generic-config {path}: {where}") from None


def _print(
    created: CreatedConnection,
    public_base_url: str,
    *,
    as_json: bool,
    token_param: str | None = None,
) -> None:
    out: dict[str, Any] = {
        "id": str(created.id),
        "provider": created.provider,
        "tenant": created.tenant,
        "tenant_id": str(created.tenant_id),
        "name": created.name,
    }
    if created.provider == "internal":
        out["changes_url"] = f"{public_base_url}/v1/changes"
        out["api_key"] = created.api_key
    elif created.provider not in WEBHOOK_PROVIDERS:
        # No webhooks: nothing to paste into the provider; its changes are polled.
        out["polled_every_seconds"] = poll_seconds(created.provider)
    else:
        url = f"{public_base_url}/webhooks/{created.provider}/{created.id}"
        if token_param is not None and created.webhook_secret is not None:
            # The provider signs nothing: the URL it posts to carries the secret.
            url += "?" + urlencode({token_param: created.webhook_secret})
        out["webhook_url"] = url
        if created.handshakes_until is not None and created.webhook_secret is None:
            # The provider's handshake brings the secret: register its webhooks by then.
            out["handshakes_until"] = created.handshakes_until.isoformat()
        else:
            out["webhook_secret"] = created.webhook_secret
    _show(out, as_json=as_json)


def poll_seconds(provider: str) -> float | None:
    """How often a provider without webhooks is polled by default."""
    api = connector(provider).api
    return api.poll_seconds if api is not None else None


def _show(out: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:<15} {value}")
    print("(the secret or key is shown only now; it is stored encrypted or hashed)")


# -- the other actions: the admin API's operations, for a terminal ------------------------

COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "provider",
    "name",
    "status",
    ("credentials", lambda c: "yes" if c.has_credentials else "no"),
    "created=created_at",
)


@cli.command
def _update(args: argparse.Namespace) -> int:
    values: dict[str, Any] = dict(cli.json_arg(args.set, "--set") or {})
    if args.direction is not None:
        values["direction"] = args.direction
    if args.entity_types is not None:
        values["entity_types"] = [t for t in args.entity_types.split(",") if t]
    if args.base_url is not None:
        values["base_url"] = args.base_url
    if args.name is not None:
        values["name"] = args.name
    if args.field_mapping is not None:
        try:
            values["field_mapping"] = json.loads(args.field_mapping.read_bytes())
        except (OSError, ValueError) as exc:
            raise cli.CommandError(f"{args.field_mapping}: {exc}", cli.EXIT_INVALID) from None
    body = cli.model(ConnectionUpdate, **values)
    return _on_connection(args, "updateConnection", body)


def _on_connection(args: argparse.Namespace, operation_id: str, body: Any) -> int:
    """Run ``operation_id`` with ``body`` on the connection ``args.id`` names; print the
    result."""
    found = cli.connection_id(args, args.id)
    return cli.emit(cli.call(args, operation_id, connection_id=found, body=body), args.json)


@cli.command
def _rotate_secret(args: argparse.Namespace) -> int:
    body = cli.model(SecretRotate, secret=args.webhook_secret, overlap_seconds=args.overlap_seconds)
    found = cli.connection_id(args, args.id)
    rotated = cli.call(args, "rotateWebhookSecret", connection_id=found, body=body)
    return cli.emit_shown_once(
        rotated, args.json, "(the secret is shown only now; it is stored encrypted)"
    )


@cli.command
def _await_handshake(args: argparse.Namespace) -> int:
    body = cli.model(HandshakeWindow, seconds=args.seconds)
    return _on_connection(args, "awaitWebhookHandshake", body)


@cli.command
def _set_credentials(args: argparse.Namespace) -> int:
    if (args.provider_api_key is None) == (args.oauth_json is None):
        raise cli.CommandError(
            "give exactly one of --provider-api-key and --oauth-json", cli.EXIT_INVALID
        )
    if args.provider_api_key is not None:
        raw: Any = {"type": "api_key", "token": args.provider_api_key}
    else:
        try:
            raw = {"type": "oauth2", **json.loads(args.oauth_json.read_bytes())}
        except (OSError, ValueError, TypeError) as exc:
            raise cli.CommandError(f"{args.oauth_json}: {exc}", cli.EXIT_INVALID) from None
    creds = cli.validate(CredentialsIn, raw).root
    return _on_connection(args, "setConnectionCredentials", creds)


@cli.command
def _pause(args: argparse.Namespace) -> int:
    body = cli.model(PauseRequest, direction=args.direction, until=args.until, reason=args.reason)
    return _on_connection(args, "pauseConnection", body)


@cli.command
def _resume(args: argparse.Namespace) -> int:
    body = cli.model(ResumeRequest, direction=args.direction)
    return _on_connection(args, "resumeConnection", body)


def register_actions(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every action of ``crmsync connections`` but ``add`` (which main.py declares)."""

    def action(name: str, help_: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        p = cli.add_action(actions, name, help_, handler, page=name == "list", description=help_)
        if name != "list":
            p.add_argument("id", type=cli.connection_arg, help="connection id, or TENANT/NAME")
        return p

    p = action(
        "list",
        "the tenant's connections",
        cli.list_command("listConnections", ConnectionQuery, COLUMNS),
    )
    p.add_argument("--provider", help="only this provider's (a slug, e.g. stripe)")
    p.add_argument(
        "--status", choices=("active", "disabled", "needs_reauth"), help="only those in this state"
    )
    p.add_argument("--name", help="only the connection of this name")
    action("show", "one connection (never its secrets)", cli.on_id("getConnection"))
    p = action("update", "change settings", _update)
    p.add_argument("--direction", choices=("in", "out", "both"), help="which way it syncs")
    p.add_argument("--entity-types", help="comma-separated: customer,job,invoice,payment")
    p.add_argument("--base-url", help="the provider API's base URL")
    p.add_argument("--name", help="a new name, unique per tenant")
    p.add_argument("--field-mapping", type=Path, help="generic connections: mapping JSON file")
    p.add_argument(
        "--set",
        help='JSON of settings as the API takes them, e.g. \'{"rate_limit": {"rate": 5}}\'',
    )
    action("disable", "stop receiving and pushing", cli.on_id("disableConnection"))
    action("enable", "resume a disabled connection", cli.on_id("enableConnection"))
    action("delete", "delete the connection (records stay)", cli.on_id("deleteConnection"))
    p = action(
        "rotate-secret", "new webhook secret; the old one works for the overlap", _rotate_secret
    )
    p.add_argument("--webhook-secret", help="the provider's new secret (else generated)")
    p.add_argument(
        "--overlap-seconds", type=int, help="how long the old secret still verifies (86400)"
    )
    p = action(
        "await-handshake",
        "take the provider's webhook handshakes for a while (FreshBooks' callbacks)",
        _await_handshake,
    )
    p.add_argument("--seconds", type=int, help="how long from now (3600; 0 ends the window)")
    p = action("set-credentials", "store API credentials (encrypted)", _set_credentials)
    p.add_argument("--provider-api-key", help="the provider's API token")
    p.add_argument("--oauth-json", type=Path, help="file with the OAuth2 tokens (see the API)")
    action(
        "health",
        "last webhook and push, error rate, circuit, token expiry",
        cli.on_id("getConnectionHealth"),
    )
    p = action("pause", "hold its webhooks (in) and/or pushes (out) back until resumed", _pause)
    p.add_argument("--direction", choices=("in", "out", "both"), help="default both")
    p.add_argument("--until", help="ISO 8601 time with offset: resume by itself then")
    p.add_argument("--reason", help="why, for the audit log and whoever looks next")
    p = action("resume", "end its pauses in force; what waited goes on in order", _resume)
    p.add_argument("--direction", choices=("in", "out", "both"), help="default both")
