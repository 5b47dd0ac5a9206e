from __future__ import annotations

from pydantic import Field, SecretStr

from crmsync.common.settings import ServiceSettings


class OutboundSettings(ServiceSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    master_keys: SecretStr = Field(
        description="Key ring decrypting provider credentials: kid:base64key[,kid:base64key].",
    )
    outbound_host: str = Field("127.0.0.1", description="Listen address (health, metrics).")
    outbound_port: int = Field(9102, ge=1, le=65535, description="Listen port.")
    outbound_kafka_start_timeout_seconds: float = Field(
        60.0, gt=0, description="How long start-up waits for Kafka before exiting."
    )
    outbound_db_pool_size: int = Field(10, ge=1, description="Max Postgres connections.")
    outbound_consumer_group: str = Field(
        "crmsync-outbound", min_length=1, description="Kafka consumer group of records.changed."
    )
    outbound_concurrency: int = Field(
        32, ge=1, le=1000, description="Pushes in flight at once, across all connections."
    )
    outbound_max_attempts: int = Field(
        10,
        ge=1,
        # With full-jitter backoff capped at 5 minutes, ten attempts span roughly 20 minutes
        # of provider trouble before the push becomes a (redrivable) dead letter.
        description="Failed attempts (5xx, timeouts) before a push becomes a dead letter.",
    )
    outbound_backoff_cap_seconds: float = Field(
        300.0, gt=0, description="Longest wait between two attempts of one push."
    )
    outbound_lease_seconds: float = Field(
        60.0,
        gt=0,
        description="A claimed push not finished within this long (a crashed worker) is retried.",
    )
    outbound_max_rate_wait_seconds: float = Field(
        2.0,
        ge=0,
        description="Longest in-line wait for a connection's rate limit; longer reschedules.",
    )
    outbound_notify_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="How often operational notifications are evaluated and sent to the "
        "tenants' notification endpoints.",
    )
    outbound_notify_circuit_minutes: float = Field(
        10.0, ge=0, description="Notify when a connection's circuit stays open this long."
    )
    outbound_notify_dead_letters: int = Field(
        100, ge=1, description="Notify when a connection's open dead letters reach this many."
    )
    outbound_sync_concurrency: int = Field(
        2, ge=0, le=50, description="Backfill/reconciliation runs at once (0: run none here)."
    )
    outbound_schedule_check_seconds: float = Field(
        10.0, gt=0, description="How often the service looks for reconciliations that are due."
    )
    outbound_reconcile_interval_seconds: float = Field(
        900.0,
        ge=0,
        description="How often each connection is polled for records modified since the last "
        "run, catching missed webhooks (0: never; per connection: settings "
        "reconcile_interval_seconds). A provider without webhooks is polled at its own "
        "interval instead (MYOB: 60 s).",
    )
    outbound_full_reconcile_interval_seconds: float = Field(
        86_400.0,
        ge=0,
        description="How often each connection is listed in full to find records deleted at the "
        "provider (0: never; per connection: settings full_reconcile_interval_seconds).",
    )
    outbound_reconcile_overlap_seconds: float = Field(
        300.0,
        ge=0,
        description="Modified-since polls start this much before the previous run: provider "
        "clocks and indexing lag behind ours.",
    )

    @property
    def address(self) -> tuple[str, int]:
        return self.outbound_host, self.outbound_port
