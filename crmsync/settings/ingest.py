from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import Field, SecretStr

from crmsync.common.settings import ServiceSettings
from schemas import topics

# What a webhook's envelope adds to its body besides base64's 4/3: the fields and the kept
# headers (aiohttp caps a header line at 8 KiB; connectors keep a handful).
ENVELOPE_OVERHEAD_BYTES = 64 * 1024
# The largest record ingest writes: both of its topics take this much.
MAX_RECORD_BYTES = min(
    t.max_message_bytes or 1024 * 1024 for t in (topics.WEBHOOKS_RAW, topics.CHANGES_INTERNAL)
)


def envelope_bytes_at_most(body_bytes: int) -> int:
    return 4 * ((body_bytes + 2) // 3) + ENVELOPE_OVERHEAD_BYTES


# The largest body whose envelope surely fits in a record.
LARGEST_BODY_BYTES = (MAX_RECORD_BYTES - ENVELOPE_OVERHEAD_BYTES) // 4 * 3


class IngestSettings(ServiceSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    master_keys: SecretStr = Field(
        description="Key ring decrypting webhook secrets: kid:base64key[,kid:base64key].",
    )
    ingest_host: str = Field("127.0.0.1", description="Listen address.")
    ingest_port: int = Field(8080, ge=1, le=65535, description="Listen port.")
    ingest_public_base_url: str = Field(
        "http://127.0.0.1:8080",
        pattern=r"^https?://[^/]+$",
        description="Scheme and host providers call; webhook URLs and HubSpot signatures use it.",
    )
    ingest_trust_forwarded_headers: bool = Field(
        False,
        description="Take the public URL from X-Forwarded-Proto/-Host (only behind your proxy).",
    )
    ingest_max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=LARGEST_BODY_BYTES,
        # Kafka would refuse a larger body's envelope for ever: the limit cannot promise it.
        description="Largest request body accepted; larger gets 413. At most "
        f"{LARGEST_BODY_BYTES} (its base64 envelope must fit webhooks.raw's record limit).",
    )
    ingest_produce_timeout_seconds: float = Field(
        2.5,
        gt=0,
        # QuickBooks Online wants an answer within 3 s; past the bound we answer 503 and the
        # provider retries, which is safe because the processor deduplicates.
        description="Longest wait for Kafka's acknowledgement before answering 503.",
    )
    ingest_connection_refresh_seconds: float = Field(
        5.0, gt=0, description="How often the connection and secret cache reloads."
    )
    ingest_quota_sync_seconds: float = Field(
        2.0,
        gt=0,
        # With several ingest processes, a tenant's rate can be overshot by what the others
        # admit within one interval: 2 s is a thirtieth of the quota's minute.
        description="How often ingest writes its per-tenant event counts and reads every "
        "process's totals and the tenants' quotas.",
    )
    ingest_kafka_start_timeout_seconds: float = Field(
        60.0, gt=0, description="How long start-up waits for Kafka before exiting."
    )
    paypal_trust_anchors_file: Path | None = Field(
        None,
        description="PEM CA certificates PayPal's webhook signing certificates must chain "
        "to (a connection's paypal_trust_anchors setting overrides); unset: the system's CA "
        "bundle.",
    )

    @property
    def address(self) -> tuple[str, int]:
        return self.ingest_host, self.ingest_port

    def paypal_trust_anchors(self) -> bytes | None:
        """The PEM bytes of the operator's PayPal trust anchors: the configured file, else
        the system's CA bundle where there is one (PayPal's chain ends at a public CA)."""
        if self.paypal_trust_anchors_file is not None:
            return self.paypal_trust_anchors_file.read_bytes()
        cafile = ssl.get_default_verify_paths().cafile
        return Path(cafile).read_bytes() if cafile and Path(cafile).is_file() else None
