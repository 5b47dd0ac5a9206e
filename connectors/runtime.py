"""Connections as the services use them: a connector, an authenticated API client, and
the connection's rate limit and circuit breaker, built once per process.

Credentials are decrypted only here, only in memory. OAuth2 tokens are refreshed with
one refresh in flight per connection; the new tokens are saved (encrypted) before use,
and a refresh the provider refuses marks the connection ``needs_reauth``: webhooks still
arrive, calls wait for an operator to re-authorise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import aiohttp

from connectors.base import Connector
from connectors.generic import GenericMapping, GenericSchemeConfig, auth_for, connector_for
from connectors.http import (
    Auth,
    AuthError,
    OAuth2Auth,
    OAuthTokens,
    ProviderError,
    StaticAuth,
    refresh_with,
)
from connectors.limits import AsyncTokenBucket, BreakerPolicy, CircuitBreaker
from connectors.registry import connector
from connectors.spec import ApiClient, RateLimit
from schemas.errors import DeadLetter

log = logging.getLogger(__name__)


def credentials_context(connection_id: uuid.UUID) -> str:
    """Associated data binding a credentials ciphertext to its connection."""
    return f"credentials:{connection_id}"


class Row(Protocol):
    """A stored connection row by column name (an asyncpg.Record is one)."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True)
class ConnectionInfo:
    id: uuid.UUID
    tenant_id: uuid.UUID
    provider: str
    name: str
    status: str
    settings: dict[str, Any]
    base_url: str | None
    credentials_encrypted: str | None = field(repr=False)
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> ConnectionInfo:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})

    def connector(self) -> Connector:
        if self.provider != "generic":
            return connector(self.provider)
        # A generic connection's limits, entity types and deletes come from its mapping.
        scheme = GenericSchemeConfig.model_validate(self.settings.get("generic") or {})
        raw = self.settings.get("generic_mapping")
        mapping = GenericMapping.model_validate(raw) if raw is not None else None
        return connector_for(scheme, mapping)

    def syncs(self, direction: Literal["in", "out"], entity_type: str) -> bool:
        """Whether this connection syncs ``entity_type`` records in that direction through
        its API (settings ``direction``: in|out|both, ``entity_types``: a subset)."""
        if self.status == "disabled" or self.provider == "internal":
            return False
        try:
            api = self.connector().api
        except (KeyError, ValueError):
            return False
        if api is None or entity_type not in api.entity_types:
            return False
        if self.settings.get("direction", "both") not in (direction, "both"):
            return False
        wanted = self.settings.get("entity_types")
        return wanted is None or entity_type in wanted


class CredentialsError(DeadLetter):
    """The connection has no usable API credentials: what needed them is parked as
    ``no_credentials``. The message is the operator's sentence alone."""

    def __init__(self, detail: str) -> None:
        super().__init__("no_credentials", detail, message=detail)


def credentials_json(
    *,
    token: str | None = None,
    oauth: OAuthTokens | None = None,
) -> str:
    """The plaintext stored (encrypted) in connections.credentials_encrypted."""
    if oauth is not None:
        return json.dumps({"type": "oauth2", **oauth.__dict__})
    if token is not None:
        return json.dumps({"type": "api_key", "token": token})
    raise ValueError("credentials need a token or OAuth tokens")


def parse_credentials(plaintext: str) -> str | OAuthTokens:
    """An API token, or OAuth2 tokens. A bare string (not JSON) is an API token."""
    try:
        value = json.loads(plaintext)
    except ValueError:
        return plaintext
    if not isinstance(value, dict):
        return plaintext
    if value.get("type") == "oauth2":
        fields = OAuthTokens.__dataclass_fields__
        return OAuthTokens(**{k: value[k] for k in fields})
    token = value.get("token")
    if not isinstance(token, str) or not token:
        raise CredentialsError("api_key credentials without a token")
    return token


def client_credentials(secret: str, token_url: str) -> OAuthTokens:
    """``client_id:client_secret`` as tokens due for the client-credentials grant at once
    (an empty refresh token asks connectors.http.refresh_with for that grant)."""
    client_id, sep, client_secret = secret.partition(":")
    if not sep or not client_id or not client_secret:
        raise CredentialsError(
            "client-credentials connections store 'client_id:client_secret' as their API key"
        )
    return OAuthTokens(
        access_token="",
        refresh_token="",
        expires_at=0.0,
        client_id=client_id,
        client_secret=client_secret,
        token_url=token_url,
    )


@dataclass
class Handle:
    """One connection's way out: client, auth, limits. Shared by all callers in a process."""

    info: ConnectionInfo
    connector: Connector
    client: ApiClient
    auth: Auth
    bucket: AsyncTokenBucket
    breaker: CircuitBreaker
    # Calls in flight at once (Xero allows 5 concurrent per tenant).
    concurrency: asyncio.Semaphore

    @property
    def needs_reauth(self) -> bool:
        return isinstance(self.auth, OAuth2Auth) and self.auth.failed is not None

    @property
    def token_seconds_left(self) -> float | None:
        return self.auth.seconds_left if isinstance(self.auth, OAuth2Auth) else None


# Concurrency per connection when a provider does not say (Xero's documented figure).
DEFAULT_CONCURRENCY = 5


class CredentialCipher(Protocol):
    """What Clients needs of the process's key ring (crmsync.common.crypto.KeyRing is
    one). The service that holds the master keys passes it in, so connectors hold no key
    and import no crypto; ``context`` binds a ciphertext to its connection."""

    def encrypt(self, plaintext: str, context: str) -> str: ...

    def decrypt(self, ciphertext: str, context: str) -> str: ...


class CredentialStore(Protocol):
    """Where Clients records what it learns about a connection's credentials: refreshed
    OAuth2 tokens (already encrypted) and a refresh the provider refused. The services
    pass in crmsync.application.connection_runtime.StoredCredentials, so connectors hold
    no database code."""

    async def save_credentials(self, info: ConnectionInfo, ciphertext: str) -> None: ...

    async def mark_needs_reauth(self, info: ConnectionInfo) -> None: ...


class Clients:
    """Builds and caches a Handle per connection; rebuilt when the connection changes."""

    def __init__(
        self,
        store: CredentialStore,
        keyring: CredentialCipher,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        breaker_policy: BreakerPolicy | None = None,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.session = session
        self.clock = clock
        self.breaker_policy = breaker_policy
        self._handles: dict[uuid.UUID, Handle] = {}
        self._lock = asyncio.Lock()

    def cached(self) -> list[Handle]:
        return list(self._handles.values())

    async def get(self, info: ConnectionInfo) -> Handle:
        handle = self._handles.get(info.id)
        if handle is not None and handle.info.updated_at == info.updated_at:
            return handle
        async with self._lock:
            handle = self._handles.get(info.id)
            if handle is None or handle.info.updated_at != info.updated_at:
                handle = self._build(info, previous=handle)
                self._handles[info.id] = handle
        return handle

    def _build(self, info: ConnectionInfo, previous: Handle | None) -> Handle:
        conn = info.connector()
        if conn.api is None:
            raise CredentialsError(f"provider {info.provider} has no API connector")
        base_url = info.base_url or conn.api.default_base_url
        if not base_url:
            raise CredentialsError(f"connection {info.id} has no base URL")
        auth = self._auth(info, conn, base_url)
        limit = _rate_limit(info.settings, conn.api.rate_limit)
        # Limits survive a settings change: a rebuilt handle must not grant a fresh burst.
        bucket = previous.bucket if previous is not None else AsyncTokenBucket(limit)
        bucket.limit = limit
        breaker = previous.breaker if previous else CircuitBreaker(self.breaker_policy)
        client = conn.api.make_client(self.session, base_url, auth, info.settings)
        concurrency = int(info.settings.get("max_concurrency", DEFAULT_CONCURRENCY))
        return Handle(
            info, conn, client, auth, bucket, breaker, asyncio.Semaphore(max(1, concurrency))
        )

    def _auth(self, info: ConnectionInfo, conn: Connector, base_url: str) -> Auth:
        if info.credentials_encrypted is None:
            raise CredentialsError(f"connection {info.id} has no API credentials")
        secret = parse_credentials(
            self.keyring.decrypt(info.credentials_encrypted, credentials_context(info.id))
        )
        api = conn.api
        if isinstance(secret, str) and api is not None and api.auth_kind == "client_credentials":
            secret = client_credentials(secret, api.token_url or "")
        if isinstance(secret, str):
            if info.provider == "generic" and info.settings.get("generic_mapping") is not None:
                mapping = GenericMapping.model_validate(info.settings["generic_mapping"])
                return auth_for(mapping, token=secret)
            return StaticAuth.bearer(secret)
        refresh = refresh_with(self.session, base_url, clock=self.clock)

        async def refresh_or_flag(tokens: OAuthTokens) -> OAuthTokens:
            try:
                return await refresh(tokens)
            except ProviderError as exc:
                if not exc.transient:
                    await self._mark_needs_reauth(info, exc)
                raise

        async def save(tokens: OAuthTokens) -> None:
            ciphertext = self.keyring.encrypt(
                credentials_json(oauth=tokens), credentials_context(info.id)
            )
            await self.store.save_credentials(info, ciphertext)

        auth = OAuth2Auth(secret, refresh_or_flag, save, clock=self.clock)
        if info.status == "needs_reauth":
            auth.failed = AuthError("the connection needs re-authorisation")
        return auth

    async def _mark_needs_reauth(self, info: ConnectionInfo, exc: ProviderError) -> None:
        log.error(
            "token refresh refused; connection %s needs re-authorisation: %s",
            info.id,
            exc,
            extra={
                "tenant": str(info.tenant_id),
                "connection": str(info.id),
                "provider": info.provider,
            },
        )
        await self.store.mark_needs_reauth(info)


def _rate_limit(settings: Mapping[str, Any], default: RateLimit) -> RateLimit:
    """A connection may lower (or, on a higher plan, raise) its provider's default:
    settings ``rate_limit`` = {"rate": 100, "per_seconds": 10, "burst": 20}."""
    override = settings.get("rate_limit")
    if not isinstance(override, Mapping):
        return default
    return RateLimit(
        rate=float(override.get("rate", default.rate)),
        per_seconds=float(override.get("per_seconds", default.per_seconds)),
        burst=int(override.get("burst", default.burst)),
    )
