"""``crmsync connections add``: create a tenant (if new) and a connection."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from connectors.generic import GenericSchemeConfig
from connectors.registry import PROVIDERS, connector
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import DatabaseUnavailableError, connect
from crmsync.common.settings import ConfigError, parse_settings
from crmsync.localstack.status import StackError
from services.ingest.settings import IngestSettings

TENANT_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def add(
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
    if provider not in PROVIDERS:
        raise StackError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
    if not TENANT_SLUG.match(tenant):
        raise StackError("tenant must be a slug: lower-case letters, digits and '-', 1-63 long")
    settings = parse_settings(IngestSettings)
    try:
        keyring = KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
    config = _generic_config(provider, generic_config)
    secret = None
    if provider != "internal":
        secret = webhook_secret or connector(provider, config).scheme.generate_secret()

    async def store() -> CreatedConnection:
        try:
            conn = await connect(settings.database_url)
        except DatabaseUnavailableError as exc:
            raise StackError(f"{exc}; is the stack up (crmsync infra up)?") from None
        try:
            return await create_connection(
                conn,
                keyring,
                tenant=tenant,
                provider=provider,
                name=name or provider,
                webhook_secret=secret,
                base_url=base_url,
                api_credentials=api_key,
                settings={"generic": config.model_dump(mode="json")} if config else {},
            )
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

    _print(asyncio.run(store()), settings.ingest_public_base_url, as_json=as_json)
    return 0


def _generic_config(provider: str, path: Path | None) -> GenericSchemeConfig | None:
    if provider != "generic":
        return None
    if path is None:
        raise StackError("a generic connection needs --generic-config FILE (JSON)")
    try:
        return GenericSchemeConfig.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise StackError(f"{path}: {exc}") from None


def _print(created: CreatedConnection, public_base_url: str, *, as_json: bool) -> None:
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
    else:
        out["webhook_url"] = f"{public_base_url}/webhooks/{created.provider}/{created.id}"
        out["webhook_secret"] = created.webhook_secret
    if as_json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:<15} {value}")
    print("(the secret or key is shown only now; it is stored encrypted or hashed)")
