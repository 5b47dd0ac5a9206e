from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from crmsync.common.crypto import KeyRing


@dataclass(frozen=True)
class KafkaTarget:
    bootstrap_servers: str
    topic_prefix: str = ""
    # Consumer groups whose committed offsets tell the ledger what was consumed: the
    # processor's faust app id and outbound's group (their settings' defaults).
    processor_group: str = "crmsync-processor"
    outbound_group: str = "crmsync-outbound"

    def topic(self, name: str) -> str:
        return self.topic_prefix + name


@dataclass(frozen=True)
class Context:
    """Who an operation acts for and what it may reach."""

    tenant_id: uuid.UUID
    keyring: KeyRing = field(repr=False)
    public_base_url: str
    kafka: KafkaTarget
    # Recorded on what the operation creates (sync jobs, resolutions): "api-key:<id>", "cli".
    actor: str
    # The operator's CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS: which provider URLs are accepted.
    allow_private_provider_urls: bool = False
