"""The outbound service's Prometheus metrics. Labels are bounded: provider, operation,
outcome, status class, reason; never a tenant or a connection."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# 1 ms .. 60 s: a push takes tens of milliseconds; under backoff it takes minutes, which
# the +Inf bucket and the retries counter show.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

PUSHES = Counter(
    "crmsync_outbound_pushes_total",
    "Push attempts, by provider, operation (create, update, delete), outcome and status class.",
    ["provider", "operation", "outcome", "status_class"],
)
PUSH_SECONDS = Histogram(
    "crmsync_outbound_push_duration_seconds",
    "Time of one push attempt, rate-limit wait included.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
COMMITTED_TO_PUSHED_SECONDS = Histogram(
    "crmsync_outbound_committed_to_pushed_seconds",
    "From a change committed in Postgres to its push acknowledged by the provider.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
RETRIES = Counter(
    "crmsync_outbound_retries_total",
    "Pushes rescheduled, by provider and reason.",
    ["provider", "reason"],
)
SKIPPED = Counter(
    "crmsync_outbound_skipped_total",
    "Pushes not made, by reason (already_pushed, not_linked_delete, unsupported,"
    " not_updatable, held).",
    ["provider", "reason"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "crmsync_outbound_rate_limit_wait_seconds_total",
    "Time pushes spent waiting for a connection's rate limit.",
    ["provider"],
)
CIRCUIT_STATE = Gauge(
    "crmsync_outbound_circuit_state",
    "Worst circuit state over a provider's connections: 0 closed, 1 half-open, 2 open.",
    ["provider"],
)
NEEDS_REAUTH = Gauge(
    "crmsync_outbound_connections_needing_reauth",
    "Connections whose OAuth2 refresh was refused, by provider.",
    ["provider"],
)
TOKEN_EXPIRY_SECONDS = Gauge(
    "crmsync_outbound_token_expiry_seconds",
    "Least time left on an OAuth2 access token among a provider's connections.",
    ["provider"],
)
DEAD_LETTERS = Counter(
    "crmsync_outbound_dead_letters_total",
    "Pushes given up and parked as dead letters, by provider and reason.",
    ["provider", "reason"],
)
QUEUE_DEPTH = Gauge("crmsync_outbound_queue_depth", "Pushes waiting (due or backing off).")
QUEUE_LAG_SECONDS = Gauge(
    "crmsync_outbound_queue_lag_seconds", "Age of the oldest change still waiting to be pushed."
)
ENQUEUED = Counter(
    "crmsync_outbound_enqueued_total",
    "Pushes queued from records.changed (one per target connection).",
    ["entity_type"],
)
