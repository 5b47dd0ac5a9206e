from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class OutboundSettings(CommonSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    outbound_host: str = Field("127.0.0.1", description="Listen address (health, metrics).")
    outbound_port: int = Field(8083, ge=1, le=65535, description="Listen port.")
    outbound_kafka_start_timeout_seconds: float = Field(
        60.0, gt=0, description="How long start-up waits for Kafka before exiting."
    )
    outbound_db_pool_size: int = Field(10, ge=1, description="Max Postgres connections.")
