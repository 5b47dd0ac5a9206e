from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from crmsync.common.settings import ServiceSettings, repo_root


class ProcessorSettings(ServiceSettings):
    """Environment: ``CRMSYNC_`` + the field name upper-cased."""

    master_keys: SecretStr = Field(
        description="Key ring decrypting provider credentials: kid:base64key[,kid:base64key].",
    )
    processor_host: str = Field("127.0.0.1", description="Listen address (health, metrics).")
    processor_port: int = Field(9101, ge=1, le=65535, description="Listen port.")
    processor_app_id: str = Field(
        "crmsync-processor",
        min_length=1,
        description="faust app id: the consumer group and the prefix of faust's own topics.",
    )
    processor_kafka_start_timeout_seconds: float = Field(
        60.0, gt=0, description="How long start-up waits for Kafka before exiting."
    )
    processor_data_dir: Path = Field(
        default_factory=lambda: repo_root() / ".crmsync" / "processor",
        description="Where faust keeps its per-app data directory (nothing durable is kept).",
    )
    processor_batch_size: int = Field(
        500,
        ge=1,
        le=10_000,
        # Measured (bench/apply_cpu.py, bench/README.md "Processor CPU per event"): the
        # apply step's CPU per change is 0.15 ms at 500 a batch, 0.21 ms at 120, and no
        # lower at 2,000.
        description="Most events applied in one Postgres transaction.",
    )
    processor_batch_window_seconds: float = Field(
        0.05,
        gt=0,
        # 50 ms: fills batches under load, adds at most 50 ms when traffic is sparse.
        description="Longest wait to fill a batch, from its first event, before applying "
        "what there is.",
    )
    processor_batch_quiet_seconds: float = Field(
        0.002,
        gt=0,
        # 2 ms: the events of one Kafka fetch reach the batch microseconds apart, so a
        # backlog still fills whole batches; a lone webhook waits 2 ms, not the window.
        description="A batch is applied once no further event came for this long (or it "
        "is full, or its window is over).",
    )
    processor_fetch_max_wait_ms: int = Field(
        1_500,
        ge=1,
        le=1_500,
        # faust's own value, which it writes into its consumer (services/processor/
        # consumer.py makes it a setting). 100 ms was measured against it on a quiet
        # machine (bench/README.md, "Seventh round"): p50 lower at 200/s, p99 higher in 3
        # of 3 pairs, no difference at 5/s; so faust's value stays the default.
        description="Longest a Kafka fetch waits at the broker for records to arrive.",
    )
    processor_normalize_in_flight: int = Field(
        10_000,
        ge=1,
        # A hydration waits at most 30 s for its provider's budget (HydrationPolicy); at
        # 200 webhooks/s (issue 18's load) 6,000 arrive meanwhile, and other connections'
        # finished envelopes are held behind it until its offset can be committed. At about
        # 1.5 KB an envelope, 10,000 is ~15 MB.
        description="Most webhooks the normalize step holds at once, across its "
        "per-connection lanes (finished ones held behind an unfinished one included); at "
        "the limit it stops taking more until some are done.",
    )
    processor_dedup_retention_days: float = Field(
        15.0,
        gt=0,
        # Longer than any provider retries (Stripe: 3 days) and than a record can stay in
        # the topics the processor reads (Kafka's defaults: 7 days of retention.ms plus up
        # to 7 days of segment.ms), so a replay or redelivery always finds its dedup row.
        # Checked against the topics' real settings at start-up.
        description="How long processed event ids are kept for deduplication; must exceed "
        "the longest a record stays in webhooks.raw, changes.internal and changes.normalized "
        "(retention.ms + segment.ms), checked at start-up.",
    )
    processor_sync_log_retention_days: float = Field(
        30.0,
        gt=0,
        # Every change in and every push out writes a row: at 100 changes/s that is about
        # 17 million rows a month. The admin API's sync log and health read recent rows.
        description="How long sync_log rows (each change received and each push) are kept.",
    )
    processor_apply_concurrency: int = Field(
        2,
        ge=1,
        le=16,
        # Two: Python prepares one batch's partitions while PostgreSQL writes another's.
        description="Transactions each apply agent runs at once, each for its own partitions"
        " (a batch under 50 changes is one).",
    )
    processor_reference_wait_seconds: float = Field(
        900.0,
        gt=0,
        # 15 minutes: providers send a record and those naming it within seconds (Stripe's
        # invoice.* and payment_intent.succeeded in the same second); a thin webhook
        # hydrated after retries, or a provider's own retry of a failed delivery, comes
        # within minutes. Past it, the dead letter names the reference for an operator.
        description="How long a change naming a record not linked yet (a payment's "
        "invoice, an invoice's customer or job) waits for it before it becomes a "
        "missing_reference dead letter.",
    )
    processor_db_pool_size: int = Field(10, ge=1, description="Max Postgres connections.")

    @property
    def address(self) -> tuple[str, int]:
        return self.processor_host, self.processor_port
