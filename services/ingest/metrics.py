"""Ingest's Prometheus metrics. Labels are bounded: provider slugs, reasons, status codes.

The request path takes its series through the cached accessors at the end: ``labels()``
checks its arguments and takes a lock on every call, a few per cent of a webhook's CPU
at full load. Bounded labels keep the caches bounded.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

from connectors.base import SIGNATURE_ERROR_REASONS
from connectors.registry import WEBHOOK_PROVIDERS

# 1 ms .. 10 s: webhook answers live in the low milliseconds; providers time out at 3-10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

REQUESTS = Counter(
    "crmsync_ingest_requests_total",
    "Requests answered, by provider (or 'internal' for /v1/changes) and status code.",
    ["provider", "code"],
)
SIGNATURE_FAILURES = Counter(
    "crmsync_ingest_signature_failures_total",
    "Webhooks refused for their signature, by provider and reason.",
    ["provider", "reason"],
)
# Every (provider, reason) exists from the start at 0: the first refused webhook then shows
# as an increase (a series born at 1 has none), and the alert on spikes sees it.
for _provider in WEBHOOK_PROVIDERS:
    for _reason in SIGNATURE_ERROR_REASONS:
        SIGNATURE_FAILURES.labels(_provider, _reason)
HANDSHAKES = Counter(
    "crmsync_ingest_webhook_handshakes_total",
    "Subscription handshakes received (an unsigned post of a mapping's verification event),"
    " by outcome: stored, not_awaited, too_many, malformed, foreign_account.",
    ["outcome"],
)
EVENTS = Counter(
    "crmsync_ingest_events_total",
    "Events acknowledged by Kafka, by provider.",
    ["provider"],
)
REQUEST_SECONDS = Histogram(
    "crmsync_ingest_request_duration_seconds",
    "Time from request start to answer, by provider.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
PRODUCE_SECONDS = Histogram(
    "crmsync_ingest_kafka_produce_duration_seconds",
    "Time Kafka took to acknowledge (acks=all), by topic.",
    ["topic"],
    buckets=LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("crmsync_ingest_requests_in_flight", "Requests being handled now.")
PAYLOAD_BYTES = Histogram(
    "crmsync_ingest_payload_bytes",
    "Request body sizes, by provider.",
    ["provider"],
    buckets=SIZE_BUCKETS,
)
CONNECTIONS_LOADED = Gauge(
    "crmsync_ingest_connections_loaded", "Active connections in the ingest cache."
)
CACHE_AGE = Gauge(
    "crmsync_ingest_connection_cache_age_seconds",
    "Seconds since the connection cache last loaded successfully.",
)
QUOTA_OVER = Counter(
    "crmsync_ingest_quota_over_total",
    "Events past their tenant's rate quota: internal changes refused (429), webhooks "
    "accepted anyway, by source (internal or a provider slug) and outcome.",
    ["source", "outcome"],
)
# Per quota, not per tenant (labels stay bounded): how many tenants are at their limit,
# and how near the nearest is. Which tenant it is, and its usage, is GET /v1/quotas.
# Every ingest process reports the same figures: aggregate with max(), not sum().
QUOTA_TENANTS_AT_LIMIT = Gauge(
    "crmsync_quota_tenants_at_limit",
    "Tenants at or past a quota's limit (events_per_minute: in the current minute).",
    ["quota"],
)
QUOTA_HIGHEST_USAGE_RATIO = Gauge(
    "crmsync_quota_highest_usage_ratio",
    "The highest usage / limit of a quota among the tenants that set it (1: at the limit).",
    ["quota"],
)


@functools.cache
def requests(provider: str, code: int) -> Counter:
    return REQUESTS.labels(provider, str(code))


@functools.cache
def events(provider: str) -> Counter:
    return EVENTS.labels(provider)


@functools.cache
def request_seconds(provider: str) -> Histogram:
    return REQUEST_SECONDS.labels(provider)


@functools.cache
def produce_seconds(topic: str) -> Histogram:
    return PRODUCE_SECONDS.labels(topic)


@functools.cache
def payload_bytes(provider: str) -> Histogram:
    return PAYLOAD_BYTES.labels(provider)


@functools.cache
def quota_over(source: str, outcome: str) -> Counter:
    return QUOTA_OVER.labels(source, outcome)
