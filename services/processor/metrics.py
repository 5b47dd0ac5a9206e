"""The processor's Prometheus metrics. Labels are bounded: sources, outcomes, reasons."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from connectors.registry import WEBHOOK_PROVIDERS
from services.processor.decide import Rule

# 1 ms .. 60 s: an apply takes milliseconds; end-to-end under lag can take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

EVENTS = Counter(
    "crmsync_processor_events_total",
    "Events processed, by source topic and outcome.",
    ["source", "outcome"],
)
RULES = Counter(
    "crmsync_processor_rules_total",
    "Changes decided by the apply rules, by the rule that decided (services/processor/"
    "decide.py's table): finer than events_total's outcome, e.g. an echo by echo (rule 5, "
    "our last push) or earlier_push (rule 5a, an earlier push read back after a later one).",
    ["rule"],
)
# Every rule exists from the start: a rare one (earlier_push) shows 0, not nothing, and
# its first firing shows as an increase.
for _rule in Rule:
    RULES.labels(_rule.value)
DEAD_LETTERS = Counter(
    "crmsync_processor_dead_letters_total",
    "Events parked as dead letters, by stage and reason.",
    ["stage", "reason"],
)
# The stages of dead_letters.stage (its CHECK constraint in infra/migrations/0003).
DEAD_LETTER_STAGES = ("ingest", "processor", "hydrate", "outbound")
DEAD_LETTERS_OPEN = Gauge(
    "crmsync_dead_letters_open",
    "Dead letters neither redriven nor discarded, by stage; read from the dead_letters "
    "table by the processor's housekeeping, so it covers every service's dead letters.",
    ["stage"],
)
WAITING_CHANGES = Gauge(
    "crmsync_processor_waiting_changes",
    "Changes parked until a record they name is linked (waiting_changes), as the "
    "processor's sweep last counted them; table-wide, so read it with max().",
)
BATCH_SIZE = Histogram(
    "crmsync_processor_batch_size",
    "Events per applied batch.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
APPLY_SECONDS = Histogram(
    "crmsync_processor_apply_duration_seconds",
    "Time to apply one batch in one Postgres transaction.",
    buckets=LATENCY_BUCKETS,
)
RECEIVED_TO_COMMITTED_SECONDS = Histogram(
    "crmsync_processor_received_to_committed_seconds",
    "From ingest receiving an event to its change committed in Postgres.",
    buckets=LATENCY_BUCKETS,
)
BATCH_RETRIES = Counter(
    "crmsync_processor_batch_retries_total",
    "Batches (or single events of a batch taken apart) tried again after an error, by "
    "agent and kind: transient (PostgreSQL or Kafka away) or unexpected.",
    ["agent", "kind"],
)
APPLY_RETRIES = Counter(
    "crmsync_processor_apply_retries_total",
    "Batches retried because Postgres was unavailable.",
)
OUTBOX_PUBLISHED = Counter(
    "crmsync_processor_outbox_published_total", "Outbox rows published to records.changed."
)
OUTBOX_LAG_SECONDS = Gauge(
    "crmsync_processor_outbox_lag_seconds", "Age of the oldest unpublished outbox row."
)
WEBHOOK_ITEMS = Counter(
    "crmsync_processor_webhook_items_total",
    "Record changes found in provider webhooks, by provider and outcome "
    "(normalized, ignored, duplicate, gone, hydrate_failed).",
    ["provider", "outcome"],
)
HYDRATIONS = Counter(
    "crmsync_processor_hydrations_total",
    "Thin-webhook records fetched from the provider's API, by provider and outcome.",
    ["provider", "outcome"],
)
# Hydration is a thin-webhook path only: every (provider, outcome) exists from the start,
# so its panel shows 0 rather than nothing and the first failure shows as an increase.
for _provider in WEBHOOK_PROVIDERS:
    for _outcome in ("fetched", "not_found", "failed"):
        HYDRATIONS.labels(_provider, _outcome)
HYDRATION_RETRIES = Counter(
    "crmsync_processor_hydration_retries_total",
    "Hydration attempts retried, by provider and reason.",
    ["provider", "reason"],
)
HYDRATION_SECONDS = Histogram(
    "crmsync_processor_hydration_duration_seconds",
    "Time to fetch one thin-webhook record, retries and rate-limit waits included.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
