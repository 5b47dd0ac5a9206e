from __future__ import annotations

from pydantic import Field, SecretStr

from crmsync.application.context import KafkaTarget
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.settings import ConfigError, ServiceSettings


class AdminSettings(ServiceSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    admin_host: str = Field("127.0.0.1", description="Listen address.")
    admin_port: int = Field(8081, ge=1, le=65535, description="Listen port.")
    admin_db_pool_size: int = Field(10, ge=1, description="Max Postgres connections.")
    # The same variables ingest reads: the admin API seals the secrets ingest opens, and
    # prints the webhook URLs ingest answers on.
    master_keys: SecretStr = Field(
        description="Key ring decrypting webhook secrets: kid:base64key[,kid:base64key]."
    )
    ingest_public_base_url: str = Field(
        "http://127.0.0.1:8080",
        pattern=r"^https?://[^/]+$",
        description="Scheme and host providers call; webhook URLs and HubSpot signatures use it.",
    )
    # The same variables the processor and outbound read: the ledger (``crmsync audit``,
    # GET /v1/audit/ledger) reads their consumer groups' committed offsets.
    processor_app_id: str = Field(
        "crmsync-processor",
        min_length=1,
        description="faust app id: the consumer group and the prefix of faust's own topics.",
    )
    outbound_consumer_group: str = Field(
        "crmsync-outbound", min_length=1, description="Kafka consumer group of records.changed."
    )

    def kafka_target(self) -> KafkaTarget:
        return KafkaTarget(
            self.kafka_bootstrap_servers,
            self.kafka_topic_prefix,
            processor_group=self.processor_app_id,
            outbound_group=self.outbound_consumer_group,
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.admin_host, self.admin_port


def keyring_from(settings: AdminSettings) -> KeyRing:
    """The key ring the admin API and the CLI seal and open secrets with; a bad one is a
    configuration error that names its variable."""
    try:
        return KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
