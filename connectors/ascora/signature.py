"""Ascora's webhook scheme.

Ascora publishes no webhook specification; the seed documents only say webhooks are signed
with a per-connection secret. Until Ascora documents otherwise we treat it as Standard
Webhooks (PROVIDERS.md), so the scheme is the same class under Ascora's name.
"""

from connectors.standard_webhooks.signature import StandardWebhooksScheme

AscoraScheme = StandardWebhooksScheme

__all__ = ["AscoraScheme"]
