"""Connections: create, list, show, change settings, disable, delete, rotate the webhook
secret, set API credentials, and health."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from pydantic import ValidationError

from connectors.egress import EgressRefusedError, check_url
from connectors.generic import GenericMapping, GenericSchemeConfig, declares_handshake
from connectors.generic.signature import CONFIGURING
from connectors.http import OAuthTokens
from connectors.registry import PROVIDERS, WEBHOOK_PROVIDERS, connector
from connectors.runtime import (
    CredentialsError,
    credentials_context,
    credentials_json,
    parse_credentials,
)
from crmsync.application import pagination
from crmsync.application.audit_trail import audited
from crmsync.application.context import Context
from crmsync.application.errors import ConflictError, InvalidError, NotFoundError
from crmsync.application.models import (
    ApiKeyCredentials,
    ConnectionCreate,
    ConnectionCreated,
    ConnectionHealth,
    ConnectionOut,
    ConnectionQuery,
    ConnectionSettingsIn,
    ConnectionUpdate,
    HandshakeWindow,
    OAuthCredentials,
    Page,
    SecretRotate,
    SecretRotated,
)
from crmsync.application.paging import page
from crmsync.common import connections as stored
from crmsync.common.connections import add_webhook_secret, create_connection
from crmsync.common.crypto import CryptoError
from crmsync.common.db import Conn
from crmsync.common.quotas import QuotaExceededError, check_connection_room

# Health looks back this far for its event and error counts.
HEALTH_WINDOW = timedelta(hours=1)


def _out(row: asyncpg.Record, ctx: Context) -> ConnectionOut:
    internal = row["provider"] == "internal"
    hooked = row["provider"] in WEBHOOK_PROVIDERS
    return ConnectionOut(
        id=row["id"],
        provider=row["provider"],
        name=row["name"],
        status=row["status"],
        base_url=row["base_url"],
        settings=row["settings"],
        has_credentials=row["creds"],
        webhook_url=f"{ctx.public_base_url}/webhooks/{row['provider']}/{row['id']}"
        if hooked
        else None,
        changes_url=f"{ctx.public_base_url}/v1/changes" if internal else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_reconciled_at=row["last_reconciled_at"],
        handshakes_until=row["handshakes_until"],
    )


async def _row(conn: Conn, ctx: Context, connection_id: uuid.UUID) -> asyncpg.Record:
    row = await stored.view_row(conn, connection_id, tenant_id=ctx.tenant_id)
    if row is None:
        raise NotFoundError(f"no connection {connection_id}")
    return row


async def require(conn: Conn, ctx: Context, connection_id: uuid.UUID) -> None:
    """Raise NotFoundError unless the connection belongs to the context's tenant."""
    await _row(conn, ctx, connection_id)


def merge_settings(
    current: dict[str, Any], update: ConnectionSettingsIn, provider: str
) -> dict[str, Any]:
    """The connection's settings after ``update``: only the fields it sets change."""
    settings = dict(current)
    given = update.model_fields_set
    values: dict[str, Any] = {
        "direction": update.direction,
        "entity_types": update.entity_types,
        "max_concurrency": update.max_concurrency,
        "conflict_policy": {k: v.model_dump(mode="json") for k, v in update.conflict_policy.items()}
        if update.conflict_policy is not None
        else None,
        "rate_limit": update.rate_limit.model_dump(mode="json") if update.rate_limit else None,
    }
    if "field_mapping" in given:
        values["generic_mapping"] = _generic_mapping(update.field_mapping, provider)
    for key, value in values.items():
        if key not in given and key != "generic_mapping":
            continue
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    for key, value in (update.provider_settings or {}).items():
        if key in _RESERVED:
            raise InvalidError(
                "reserved setting",
                loc=f"/body/provider_settings/{key}",
                msg="set it through its own field",
            )
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    return settings


def _generic_mapping(raw: dict[str, Any] | None, provider: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if provider != "generic":
        raise InvalidError(
            "only generic connections take a field mapping",
            loc="/body/field_mapping",
            msg=f"provider {provider} maps fields in its connector",
        )
    try:
        mapping = GenericMapping.model_validate(raw)
    except ValidationError as exc:
        raise _invalid("/body/field_mapping", exc) from None
    dumped: dict[str, Any] = mapping.model_dump(mode="json")
    return dumped


_RESERVED = frozenset(
    {
        "direction",
        "entity_types",
        "conflict_policy",
        "rate_limit",
        "max_concurrency",
        "generic",
        "generic_mapping",
    }
)


def _invalid(loc: str, exc: ValidationError) -> InvalidError:
    first = exc.errors(include_url=False)[0]
    where = "/".join(str(p) for p in first["loc"])
    return InvalidError(
        "invalid value",
        loc=f"{loc}/{where}" if where else loc,
        msg=first["msg"],
        type_=first["type"],
    )


def check_provider_url(ctx: Context, url: str | None, loc: str) -> None:
    """A URL no provider can have (DESIGN invariant 12) is a 422 here rather than a refused
    call later. The call is still checked where it connects: DNS may change after this."""
    if url is None:
        return
    try:
        check_url(url, allow_private=ctx.allow_private_provider_urls)
    except EgressRefusedError as exc:
        raise InvalidError(
            "provider URL refused", loc=loc, msg=str(exc), type_="provider_url"
        ) from None


def _check_mapping_url(ctx: Context, settings: dict[str, Any]) -> None:
    api = (settings.get("generic_mapping") or {}).get("api") or {}
    check_provider_url(ctx, api.get("base_url"), "/body/field_mapping/api/base_url")


def _credentials_plaintext(creds: ApiKeyCredentials | OAuthCredentials) -> str:
    if isinstance(creds, ApiKeyCredentials):
        return credentials_json(token=creds.token)
    return credentials_json(
        oauth=OAuthTokens(
            access_token=creds.access_token,
            refresh_token=creds.refresh_token,
            expires_at=creds.expires_at.timestamp(),
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            token_url=creds.token_url,
        )
    )


def first_secret(
    provider: str,
    given: str | None,
    scheme: GenericSchemeConfig | None,
    settings: dict[str, Any],
    *,
    now: datetime,
) -> tuple[str | None, datetime | None]:
    """A new connection's first webhook secret (the one given, else generated), or, for a
    mapping whose provider issues its secrets by handshake (FreshBooks'), none and the time
    until which it takes handshakes: a secret we made would sign nothing."""
    if provider not in WEBHOOK_PROVIDERS:
        return None, None
    if given is None and declares_handshake(settings):
        return None, now + stored.HANDSHAKE_WINDOW
    return given or connector(provider, scheme).scheme.generate_secret(), None


@audited("connection.create")
async def create(conn: Conn, ctx: Context, body: ConnectionCreate) -> ConnectionCreated:
    if body.provider not in PROVIDERS:
        raise InvalidError(
            "unknown provider", loc="/body/provider", msg=f"one of {', '.join(PROVIDERS)}"
        )
    scheme = None
    if body.provider == "generic":
        if body.generic_config is None:
            raise InvalidError(
                "a generic connection needs its signature scheme",
                loc="/body/generic_config",
                msg="required for provider generic",
            )
        try:
            scheme = GenericSchemeConfig.model_validate(body.generic_config, context=CONFIGURING)
        except ValidationError as exc:
            raise _invalid("/body/generic_config", exc) from None
    elif body.generic_config is not None:
        raise InvalidError(
            "only generic connections take a signature scheme",
            loc="/body/generic_config",
            msg="not allowed for this provider",
        )
    check_provider_url(ctx, body.base_url, "/body/base_url")
    if isinstance(body.credentials, OAuthCredentials):
        check_provider_url(ctx, body.credentials.token_url, "/body/credentials/token_url")
    settings = merge_settings({}, body.settings, body.provider)
    _check_mapping_url(ctx, settings)
    if scheme is not None:
        settings["generic"] = scheme.model_dump(mode="json")
    secret, handshakes_until = first_secret(
        body.provider, body.webhook_secret, scheme, settings, now=datetime.now(UTC)
    )
    slug = await conn.fetchval("SELECT slug FROM tenants WHERE id = $1", ctx.tenant_id)
    if slug is None:
        raise NotFoundError("no such tenant")
    try:
        async with conn.transaction():
            # The tenant's quota row stays locked until the connection is in: two creates
            # cannot both take the last place.
            await check_connection_room(conn, ctx.tenant_id)
            created = await create_connection(
                conn,
                ctx.keyring,
                tenant=slug,
                provider=body.provider,
                name=body.name or body.provider,
                webhook_secret=secret,
                base_url=body.base_url,
                api_credentials=_credentials_plaintext(body.credentials)
                if body.credentials is not None
                else None,
                settings=settings,
                handshakes_until=handshakes_until,
            )
    except asyncpg.UniqueViolationError:
        raise ConflictError(
            f"the tenant already has a connection named {body.name or body.provider!r}"
        ) from None
    except QuotaExceededError as exc:
        # 409, not 422: the request is valid; the tenant's state (its connections against
        # its quota) refuses it, and the same request succeeds once that state changes.
        raise ConflictError(str(exc), quota=exc.quota, limit=exc.limit, usage=exc.usage) from None
    out = _out(await _row(conn, ctx, created.id), ctx)
    return ConnectionCreated(
        **out.model_dump(), webhook_secret=created.webhook_secret, api_key=created.api_key
    )


async def list_(conn: Conn, ctx: Context, query: ConnectionQuery) -> Page[ConnectionOut]:
    after = pagination.decode(query.cursor, datetime, uuid.UUID) if query.cursor else None
    found = await stored.view_rows(
        conn,
        tenant_id=ctx.tenant_id,
        provider=query.provider,
        status=query.status,
        after=after,
        limit=query.limit + 1,
        name=query.name,
    )
    return page([_out(r, ctx) for r in found], query.limit, lambda c: (c.created_at, c.id))


async def get(conn: Conn, ctx: Context, connection_id: uuid.UUID) -> ConnectionOut:
    return _out(await _row(conn, ctx, connection_id), ctx)


@audited("connection.update")
async def update(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, body: ConnectionUpdate
) -> ConnectionOut:
    async with conn.transaction():
        row = await stored.lock_settings(conn, connection_id, tenant_id=ctx.tenant_id)
        if row is None:
            raise NotFoundError(f"no connection {connection_id}")
        settings = merge_settings(row["settings"], body, row["provider"])
        given = body.model_fields_set
        if "base_url" in given:
            check_provider_url(ctx, body.base_url, "/body/base_url")
        if "field_mapping" in given:
            _check_mapping_url(ctx, settings)
        try:
            await stored.update_connection(
                conn,
                connection_id,
                tenant_id=ctx.tenant_id,
                settings=settings,
                set_name="name" in given,
                name=body.name,
                set_base_url="base_url" in given,
                base_url=body.base_url,
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(
                f"the tenant already has a connection named {body.name!r}"
            ) from None
    return await get(conn, ctx, connection_id)


@audited("connection.set_status")
async def set_status(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, status: Literal["active", "disabled"]
) -> ConnectionOut:
    if not await stored.set_status(conn, connection_id, status, tenant_id=ctx.tenant_id):
        raise NotFoundError(f"no connection {connection_id}")
    return await get(conn, ctx, connection_id)


@audited("connection.delete")
async def delete(conn: Conn, ctx: Context, connection_id: uuid.UUID) -> None:
    """Delete the connection with its secrets, keys, links and queued pushes; the records
    stay (other connections may hold them)."""
    if not await stored.delete_connection(conn, connection_id, tenant_id=ctx.tenant_id):
        raise NotFoundError(f"no connection {connection_id}")


@audited("connection.rotate_secret")
async def rotate_secret(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, body: SecretRotate, *, now: datetime
) -> SecretRotated:
    row = await _row(conn, ctx, connection_id)
    if row["provider"] == "internal":
        raise ConflictError("internal connections have no webhook secret; rotate their API key")
    if row["provider"] not in WEBHOOK_PROVIDERS:
        raise ConflictError(f"{row['provider']} sends no webhooks, so it has no webhook secret")
    scheme = None
    if row["provider"] == "generic":
        scheme = GenericSchemeConfig.model_validate(row["settings"].get("generic") or {})
    secret = body.secret or connector(row["provider"], scheme).scheme.generate_secret()
    retire_at = now + timedelta(seconds=body.overlap_seconds)
    await add_webhook_secret(conn, ctx.keyring, connection_id, secret, retire_current_at=retire_at)
    await stored.touch(conn, connection_id, tenant_id=ctx.tenant_id)
    return SecretRotated(
        connection_id=connection_id, webhook_secret=secret, previous_expire_at=retire_at
    )


@audited("connection.await_handshake")
async def await_handshake(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, body: HandshakeWindow, *, now: datetime
) -> ConnectionOut:
    """The connection takes its provider's subscription handshakes for ``body.seconds``
    (an operator registering the provider's webhooks again). Its secrets stay: each code
    the provider accepts back is added beside them."""
    row = await _row(conn, ctx, connection_id)
    if not declares_handshake(row["settings"]):
        raise ConflictError(
            f"{row['provider']} connection {connection_id}: its mapping declares no webhook"
            " handshake (webhook.verification), so its secrets are set with rotate-secret"
        )
    await stored.await_handshakes(
        conn, connection_id, now + timedelta(seconds=body.seconds), tenant_id=ctx.tenant_id
    )
    return await get(conn, ctx, connection_id)


@audited("connection.set_credentials")
async def set_credentials(
    conn: Conn,
    ctx: Context,
    connection_id: uuid.UUID,
    body: ApiKeyCredentials | OAuthCredentials,
) -> None:
    """Store new credentials (encrypted); a connection waiting for re-authorisation is
    active again."""
    if isinstance(body, OAuthCredentials):
        check_provider_url(ctx, body.token_url, "/body/token_url")
    ciphertext = ctx.keyring.encrypt(
        _credentials_plaintext(body), credentials_context(connection_id)
    )
    if not await stored.reauthorise(conn, connection_id, ciphertext, tenant_id=ctx.tenant_id):
        raise NotFoundError(f"no connection {connection_id}")


async def health(
    conn: Conn, ctx: Context, connection_id: uuid.UUID, *, now: datetime
) -> ConnectionHealth:
    info = await stored.status_and_credentials(conn, connection_id, tenant_id=ctx.tenant_id)
    if info is None:
        raise NotFoundError(f"no connection {connection_id}")
    since = now - HEALTH_WINDOW
    # Each count carries the tenant too: a forged change could name this connection under
    # another tenant, and its sync_log row is that tenant's, not this one's.
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT max(created_at) FROM sync_log
            WHERE connection_id = $1 AND tenant_id = $4 AND direction = 'in') AS last_in,
          (SELECT max(created_at) FROM sync_log
            WHERE connection_id = $1 AND tenant_id = $4 AND direction = 'out'
              AND outcome = 'pushed') AS last_out,
          (SELECT count(*) FROM sync_log
            WHERE connection_id = $1 AND tenant_id = $4 AND created_at >= $2) AS events,
          (SELECT count(*) FROM sync_log
            WHERE connection_id = $1 AND tenant_id = $4 AND created_at >= $2
              AND (outcome = 'dead_lettered' OR error IS NOT NULL)) AS logged_errors,
          -- Outbound dead letters are not in the sync log: each was one more failed event.
          (SELECT count(*) FROM dead_letters
            WHERE connection_id = $1 AND tenant_id = $4 AND created_at >= $2
              AND stage = 'outbound')
            AS push_failures,
          (SELECT count(*) FROM push_jobs WHERE connection_id = $1 AND tenant_id = $4) AS pending,
          -- The outbound service reschedules a push the breaker refused with this error.
          EXISTS (SELECT 1 FROM push_jobs
                   WHERE connection_id = $1 AND tenant_id = $4
                     AND last_error LIKE 'circuit_open%'
                     AND next_attempt_at > $3) AS circuit_open,
          (SELECT count(*) FROM dead_letters
            WHERE connection_id = $1 AND tenant_id = $4
              AND redriven_at IS NULL AND discarded_at IS NULL)
            AS open_dead,
          EXISTS (SELECT 1 FROM pauses p
                   WHERE p.tenant_id = $4 AND (p.connection_id IS NULL OR p.connection_id = $1)
                     AND p.inbound AND p.starts_at <= $3 AND (p.ends_at IS NULL OR p.ends_at > $3))
            AS paused_in,
          EXISTS (SELECT 1 FROM pauses p
                   WHERE p.tenant_id = $4 AND (p.connection_id IS NULL OR p.connection_id = $1)
                     AND p.outbound AND p.starts_at <= $3
                     AND (p.ends_at IS NULL OR p.ends_at > $3))
            AS paused_out
        """,
        connection_id,
        since,
        now,
        ctx.tenant_id,
    )
    assert row is not None  # noqa: S101 - a SELECT of scalars always returns a row
    events = int(row["events"]) + int(row["push_failures"])
    errors = int(row["logged_errors"]) + int(row["push_failures"])
    kind, expires = _credentials_state(ctx, connection_id, info["credentials_encrypted"])
    return ConnectionHealth(
        connection_id=connection_id,
        status=info["status"],
        needs_reauth=info["status"] == "needs_reauth",
        last_webhook_at=row["last_in"],
        last_push_at=row["last_out"],
        window_seconds=int(HEALTH_WINDOW.total_seconds()),
        events_in_window=events,
        errors_in_window=errors,
        error_rate=round(errors / events, 4) if events else 0.0,
        circuit="open" if row["circuit_open"] else "closed",
        pending_pushes=row["pending"],
        open_dead_letters=row["open_dead"],
        credentials=kind,
        token_expires_at=expires,
        paused_inbound=row["paused_in"],
        paused_outbound=row["paused_out"],
    )


def _credentials_state(
    ctx: Context, connection_id: uuid.UUID, ciphertext: str | None
) -> tuple[Literal["none", "api_key", "oauth2", "unreadable"], datetime | None]:
    if ciphertext is None:
        return "none", None
    try:
        secret = parse_credentials(
            ctx.keyring.decrypt(ciphertext, credentials_context(connection_id))
        )
    except (CryptoError, CredentialsError, ValueError, KeyError, TypeError):
        return "unreadable", None
    if isinstance(secret, OAuthTokens):
        return "oauth2", datetime.fromtimestamp(secret.expires_at, UTC)
    return "api_key", None
