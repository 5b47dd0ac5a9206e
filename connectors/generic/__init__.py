"""Any provider that signs webhooks with a configurable HMAC (GitHub-style and similar).

There is no single ``CONNECTOR``: the scheme depends on each connection's configuration,
so callers build one with ``connector_for(config)``.
"""

from connectors.base import Connector
from connectors.generic.signature import GenericScheme, GenericSchemeConfig


def connector_for(config: GenericSchemeConfig) -> Connector:
    """The connector of one generic connection; its timestamp and event-id headers are kept."""
    configured = (config.timestamp_header, config.event_id_header)
    kept = ("content-type", *(name for name in configured if name is not None))
    return Connector(
        slug="generic", scheme=GenericScheme(config), kept_headers=tuple(dict.fromkeys(kept))
    )


__all__ = ["GenericScheme", "GenericSchemeConfig", "connector_for"]
