"""Any provider that signs webhooks with a configurable HMAC, mapped by a mapping file.

There is no single ``CONNECTOR``: the scheme depends on each connection's configuration,
so callers build one with ``connector_for(config)``. The mapper and the API client read
the connection's mapping (``settings["generic_mapping"]``, see ``config``) on every call,
so one Connector serves any mapping; pass the mapping too when the ApiSpec's entity
types, rate limit and auth kind should be that connection's rather than the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.base import Connector
from connectors.generic.client import auth_for, make_client
from connectors.generic.config import (
    GenericMapping,
    MappingFileError,
    load_mapping_file,
    mapping_from_settings,
    mapping_settings,
)
from connectors.generic.mapping import Mapper
from connectors.generic.signature import GenericScheme, GenericSchemeConfig
from connectors.spec import ENTITY_TYPES, ApiSpec, RateLimit

# Providers connected by a mapping file we ship (examples/<name>.json, with a simulator
# configuration beside it): `crmsync connections add --provider <name>` and `crmsync
# simulate` take these names; the connection itself is a generic one.
EXAMPLES = Path(__file__).resolve().parent / "examples"
CATALOGUE: dict[str, Path] = {
    name: EXAMPLES / f"{name}.json" for name in ("mailchimp", "mautic", "woocommerce", "freshbooks")
}
# Without a mapping to say otherwise: the default pace of connectors.generic.config.
DEFAULT_RATE_LIMIT = RateLimit(rate=5.0, per_seconds=1.0, burst=10)
_MAPPER = Mapper()


def api_spec(mapping: GenericMapping | None = None) -> ApiSpec:
    """The ApiSpec of a generic connection; without its mapping, every entity type with
    the default pace (the client still refuses what the connection's mapping lacks)."""
    if mapping is None:
        return ApiSpec(
            entity_types=ENTITY_TYPES,
            rate_limit=DEFAULT_RATE_LIMIT,
            auth_kind="bearer",
            make_client=make_client,
            deletable=ENTITY_TYPES,
        )
    limit = mapping.api.rate_limit
    return ApiSpec(
        entity_types=tuple(mapping.entities),
        rate_limit=RateLimit(rate=limit.rate, per_seconds=limit.per_seconds, burst=limit.burst),
        auth_kind=mapping.api.auth.kind,
        make_client=make_client,
        default_base_url=mapping.api.base_url,
        deletable=tuple(e for e, m in mapping.entities.items() if m.endpoints.delete),
    )


def declares_handshake(settings: Mapping[str, Any]) -> bool:
    """Whether a connection with these settings is a generic one whose mapping declares a
    subscription handshake (``webhook.verification``: FreshBooks'), so its webhook secrets
    are the codes its provider posts, not one we generate."""
    try:
        mapping = mapping_from_settings(settings)
    except ValueError:
        return False
    return mapping.webhook is not None and mapping.webhook.verification is not None


def connector_for(config: GenericSchemeConfig, mapping: GenericMapping | None = None) -> Connector:
    """The connector of one generic connection; its timestamp, event-id and ``keep_headers``
    headers are kept."""
    return Connector(
        slug="generic",
        scheme=GenericScheme(config),
        kept_headers=config.header_names,
        mapper=_MAPPER,
        api=api_spec(mapping),
    )


__all__ = [
    "CATALOGUE",
    "GenericMapping",
    "GenericScheme",
    "GenericSchemeConfig",
    "Mapper",
    "MappingFileError",
    "api_spec",
    "auth_for",
    "connector_for",
    "declares_handshake",
    "load_mapping_file",
    "mapping_settings",
]
