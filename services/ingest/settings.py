from __future__ import annotations

from pydantic import Field

from crmsync.common.settings import CommonSettings


class IngestSettings(CommonSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    ingest_host: str = Field("127.0.0.1", description="Listen address.")
    ingest_port: int = Field(8080, ge=1, le=65535, description="Listen port.")
    ingest_kafka_start_timeout_seconds: float = Field(
        60.0, gt=0, description="How long start-up waits for Kafka before exiting."
    )
