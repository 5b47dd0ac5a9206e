"""Writes the Grafana dashboards of infra/grafana/dashboards/ from the definitions below.

    .venv/bin/python infra/grafana/build_dashboards.py

Edit here, run it, commit both: tests/unit/test_observability.py fails when the JSON
and this file disagree. One builder keeps every panel alike (datasource, title, unit,
description, legend) and lays panels out on Grafana's 24-column grid in order.

Panels plot the recording rules of infra/prometheus/rules/crmsync-recording.yml where
one exists, so a dashboard costs Prometheus nothing per viewer; tests/e2e/
test_prometheus_dashboards.py evaluates every query against a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_COLUMNS = 24
# The Outbound dashboard's provider picker; "All" matches every provider.
PROVIDER_VARIABLE = "provider"

# Circuit breaker gauge values (connectors/limits.py CIRCUIT_GAUGE).
CIRCUIT_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "half-open", "color": "orange", "index": 1},
            "2": {"text": "open", "color": "red", "index": 2},
        },
    }
]
UP_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "DOWN", "color": "red", "index": 0},
            "1": {"text": "UP", "color": "green", "index": 1},
        },
    }
]


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    mappings: list[dict[str, Any]] = field(default_factory=list)
    stack: bool = False


def _field_config(p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": p.unit,
        "color": {"mode": "thresholds" if p.kind == "stat" else "palette-classic"},
        "thresholds": {
            "mode": "absolute",
            "steps": [{"color": c, "value": v} for v, c in p.thresholds],
        },
        "mappings": p.mappings,
    }
    if p.unit == "percentunit":
        defaults["min"] = 0
    if p.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
        }
    return {"defaults": defaults, "overrides": []}


def _options(p: Panel) -> dict[str, Any]:
    if p.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "auto",
            "textMode": "value_and_name",
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
        }
    return {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def _panels(panels: list[Panel]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for number, p in enumerate(panels, start=1):
        if x + p.width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        out.append(
            {
                "id": number,
                "type": p.kind,
                "title": p.title,
                "description": p.description,
                "datasource": DATASOURCE,
                "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                        **({"instant": True, "range": False} if p.kind == "stat" else {}),
                    }
                    for i, (expr, legend) in enumerate(p.targets)
                ],
                "fieldConfig": _field_config(p),
                "options": _options(p),
            }
        )
        x += p.width
        row_height = max(row_height, p.height)
    return out


def _provider_variable() -> dict[str, Any]:
    query = "label_values(crmsync_outbound_pushes_total, provider)"
    return {
        "name": PROVIDER_VARIABLE,
        "label": "Provider",
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": "provider"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    *,
    variables: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["crmsync"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "templating": {"list": variables or []},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["crmsync"],
                "asDropdown": True,
                "title": "crmsync",
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "panels": _panels(panels),
    }


SERVICES_UP = Panel(
    "Services up",
    "1 (UP) when Prometheus's last scrape of the service's /metrics succeeded, 0 (DOWN) "
    "when it failed. DOWN for a minute fires CrmsyncServiceDown: check the process or "
    "container and its last log lines.",
    "none",
    [('up{job=~"crmsync-.*"}', "{{service}} {{instance}}")],
    kind="stat",
    width=24,
    height=4,
    thresholds=[(None, "red"), (1, "green")],
    mappings=UP_MAPPINGS,
)

DEAD_LETTERS_OPEN = Panel(
    "Open dead letters by stage",
    "Dead letters neither redriven nor discarded, per stage (ingest, processor, hydrate, "
    "outbound), read from the dead_letters table every 15 s. Growing for 20 minutes fires "
    "CrmsyncDeadLettersGrowing; each one is in the admin API by the dead_letter_id its "
    "log line carries.",
    "short",
    [("stage:crmsync_dead_letters_open:max", "{{stage}}")],
    stack=True,
)

CONSUMER_LAG = Panel(
    "Consumer lag by group and topic",
    "Messages on each topic the consumer group has not committed yet (log end minus "
    "committed offset, summed over partitions; refreshed every 10 s). Over 1000 for 5 "
    "minutes fires CrmsyncConsumerLagHigh.",
    "short",
    [("group_topic:crmsync_kafka_consumer_lag:sum", "{{group}} {{topic}}")],
)


def overview() -> dict[str, Any]:
    return dashboard(
        "crmsync-overview",
        "crmsync / Overview",
        "Is the pipeline healthy: webhooks arriving, verified, applied and pushed; errors, "
        "end-to-end latency, lag and dead letters at a glance.",
        [
            SERVICES_UP,
            Panel(
                "Throughput",
                "Events per second at each step: webhooks and internal changes accepted by "
                "ingest (acknowledged by Kafka), changes applied to PostgreSQL by the "
                "processor, pushes acknowledged by the other systems.",
                "ops",
                [
                    ("sum(provider:crmsync_ingest_events:rate5m)", "accepted by ingest"),
                    (":crmsync_processor_events_applied:rate5m", "applied by the processor"),
                    (":crmsync_outbound_pushes_succeeded:rate5m", "pushed by outbound"),
                ],
            ),
            Panel(
                "Error ratio",
                "Share of work that failed at each step: ingest answers with 5xx (event not "
                "stored, the provider retries), processor events dead-lettered, push "
                "attempts failed (retried with backoff until they dead-letter).",
                "percentunit",
                [
                    (":crmsync_ingest_requests:error_ratio_rate5m", "ingest 5xx"),
                    (":crmsync_processor_events:dead_letter_ratio_rate5m", "dead-lettered"),
                    (":crmsync_outbound_pushes:failure_ratio_rate5m", "push failures"),
                ],
            ),
            Panel(
                "End-to-end latency p50 / p99",
                "Received by ingest -> committed in PostgreSQL (SLO: p99 under 1 s), and "
                "committed -> acknowledged by the provider over all providers (SLO per "
                "provider: p99 under 5 s). Per provider: Outbound dashboard.",
                "s",
                [
                    (
                        ":crmsync_processor_received_to_committed_seconds:p50_rate5m",
                        "committed p50",
                    ),
                    (
                        ":crmsync_processor_received_to_committed_seconds:p99_rate5m",
                        "committed p99",
                    ),
                    (":crmsync_outbound_committed_to_pushed_seconds:p50_rate5m", "pushed p50"),
                    (":crmsync_outbound_committed_to_pushed_seconds:p99_rate5m", "pushed p99"),
                ],
            ),
            CONSUMER_LAG,
            Panel(
                "Outbox and push queue lag",
                "Age of the oldest committed change not yet published to records.changed "
                "(outbox), and of the oldest push still waiting for its provider (push "
                "queue). Both near 0 when healthy; outbox over 60 s for 5 minutes fires "
                "CrmsyncOutboxLagHigh.",
                "s",
                [
                    (":crmsync_processor_outbox_lag_seconds:max", "outbox"),
                    (":crmsync_outbound_queue_lag_seconds:max", "push queue"),
                ],
            ),
            DEAD_LETTERS_OPEN,
        ],
    )


def ingest() -> dict[str, Any]:
    return dashboard(
        "crmsync-ingest",
        "crmsync / Ingest",
        "The HTTP front door: webhooks and internal changes per provider, their answers, "
        "signature failures, latency and Kafka acknowledgements.",
        [
            Panel(
                "Requests by provider and status code",
                "Requests answered per second. 200/202: stored in Kafka. 401: signature or "
                "API key refused. 404: unknown provider or connection. 413: body too large. "
                "503: Kafka did not acknowledge (the provider retries).",
                "reqps",
                [("provider_code:crmsync_ingest_requests:rate5m", "{{provider}} {{code}}")],
                stack=True,
            ),
            Panel(
                "Events accepted by provider",
                "Events per second acknowledged by Kafka (acks=all) and answered 2xx; "
                "'internal' counts each change of a POST /v1/changes batch.",
                "ops",
                [("provider:crmsync_ingest_events:rate5m", "{{provider}}")],
                stack=True,
            ),
            Panel(
                "Signature failures by reason",
                "Webhooks refused with 401 per second, over all providers. bad_signature: "
                "wrong or rotated secret; stale_timestamp: outside the replay window (clock "
                "skew); missing_header / malformed_header: not the provider, or a proxy "
                "stripped headers; no_secret: the connection has no usable secret.",
                "reqps",
                [
                    (
                        "sum by (reason) "
                        "(provider_reason:crmsync_ingest_signature_failures:rate5m)",
                        "{{reason}}",
                    )
                ],
            ),
            Panel(
                "Signature failures by provider",
                "Webhooks refused with 401 per second, per provider. Over 10% of a "
                "provider's webhooks for 5 minutes fires CrmsyncSignatureFailureSpike; "
                "ingest's log lines 'webhook signature refused' name tenant and connection.",
                "reqps",
                [
                    (
                        "sum by (provider) "
                        "(provider_reason:crmsync_ingest_signature_failures:rate5m)",
                        "{{provider}}",
                    )
                ],
            ),
            Panel(
                "5xx ratio",
                "Share of requests answered 5xx: events not stored (Kafka unavailable or too "
                "slow to acknowledge). Providers retry them; a sustained ratio means they "
                "are piling up retries.",
                "percentunit",
                [(":crmsync_ingest_requests:error_ratio_rate5m", "5xx")],
            ),
            Panel(
                "Request duration p50 / p99 by provider",
                "Time from request start to answer, Kafka acknowledgement included. "
                "Providers time out at 3-10 s (QuickBooks 3 s, Xero and Shopify 5 s).",
                "s",
                [
                    (
                        "provider:crmsync_ingest_request_duration_seconds:p50_rate5m",
                        "{{provider}} p50",
                    ),
                    (
                        "provider:crmsync_ingest_request_duration_seconds:p99_rate5m",
                        "{{provider}} p99",
                    ),
                ],
            ),
            Panel(
                "Kafka acknowledgement p99 by topic",
                "Time Kafka took to acknowledge a produce with acks=all (all in-sync "
                "replicas). Rising: broker disk or replication trouble.",
                "s",
                [("topic:crmsync_ingest_kafka_produce_duration_seconds:p99_rate5m", "{{topic}}")],
            ),
            Panel(
                "Payload size p99 by provider",
                "99th percentile of request body sizes. Bodies over "
                "CRMSYNC_INGEST_MAX_BODY_BYTES (1 MiB) are refused with 413.",
                "bytes",
                [("provider:crmsync_ingest_payload_bytes:p99_rate5m", "{{provider}}")],
            ),
            Panel(
                "Requests in flight",
                "Requests being handled right now, summed over ingest replicas.",
                "short",
                [("sum(crmsync_ingest_requests_in_flight)", "in flight")],
            ),
            Panel(
                "Connections loaded",
                "Active connections in each replica's cache of connections and secrets. A "
                "replica lower than the others has not reloaded.",
                "short",
                [("crmsync_ingest_connections_loaded", "{{instance}}")],
            ),
            Panel(
                "Connection cache age",
                "Seconds since each replica last reloaded connections and secrets "
                "successfully (every CRMSYNC_INGEST_CONNECTION_REFRESH_SECONDS, 5 s). "
                "Growing: PostgreSQL unreachable; the last good copy is served.",
                "s",
                [("crmsync_ingest_connection_cache_age_seconds", "{{instance}}")],
            ),
        ],
    )


def processor() -> dict[str, Any]:
    return dashboard(
        "crmsync-processor",
        "crmsync / Processor",
        "From Kafka to PostgreSQL: events applied per outcome, dead letters, batches, "
        "received -> committed latency, thin-webhook hydration and the outbox relay.",
        [
            Panel(
                "Events by source topic and outcome",
                "Events per second per topic read (changes.internal, changes.normalized) "
                "and outcome: applied, duplicate (redelivered), no_op, echo (our own push "
                "coming back), stale (older than what was applied), conflict (parked), "
                "waiting (names a record not linked yet), erased (a person a privacy erase "
                "removed), dead_lettered.",
                "ops",
                [("source_outcome:crmsync_processor_events:rate5m", "{{source}} {{outcome}}")],
                stack=True,
            ),
            Panel(
                "Changes by the apply rule that decided",
                "Changes per second by rule (services/processor/decide.py's table), finer "
                "than the outcome: an echo is echo (our last push coming back) or "
                "earlier_push (an earlier push read back after a later one); a no_op is "
                "unchanged or status_behind. A rule that starts firing, or stops, shows a "
                "provider behaving differently.",
                "ops",
                [("rule:crmsync_processor_rules:rate5m", "{{rule}}")],
                stack=True,
            ),
            Panel(
                "Dead-letter ratio",
                "Share of processed events parked as dead letters (bad input never stops a "
                "partition: it is parked with its reason and bytes, and redrivable).",
                "percentunit",
                [(":crmsync_processor_events:dead_letter_ratio_rate5m", "dead-lettered")],
            ),
            Panel(
                "Dead letters by stage and reason",
                "New dead letters per second written by the processor, per stage "
                "(processor: parsing and applying; hydrate: fetching a thin webhook's "
                "record) and reason.",
                "ops",
                [
                    (
                        "stage_reason:crmsync_processor_dead_letters:rate5m",
                        "{{stage}} {{reason}}",
                    )
                ],
            ),
            DEAD_LETTERS_OPEN,
            Panel(
                "Changes waiting for a reference",
                "Changes parked because a record they name (a payment's invoice, an "
                "invoice's customer or job) is not linked yet: applied once it is, a "
                "missing_reference dead letter after CRMSYNC_PROCESSOR_REFERENCE_WAIT_SECONDS.",
                "short",
                [(":crmsync_processor_waiting_changes:max", "waiting")],
            ),
            Panel(
                "Received -> committed p50 / p99",
                "From ingest receiving an event (the envelope's received_at) to its change "
                "committed in PostgreSQL. SLO: p99 under 1 s; over it for 10 minutes fires "
                "CrmsyncCommitLatencySLO.",
                "s",
                [
                    (":crmsync_processor_received_to_committed_seconds:p50_rate5m", "p50"),
                    (":crmsync_processor_received_to_committed_seconds:p99_rate5m", "p99"),
                ],
            ),
            Panel(
                "Batch apply duration p99",
                "Time to apply one batch in one PostgreSQL transaction (dedup, merge, "
                "records, links, outbox).",
                "s",
                [(":crmsync_processor_apply_duration_seconds:p99_rate5m", "p99")],
            ),
            Panel(
                "Mean batch size",
                "Events per applied batch: near CRMSYNC_PROCESSOR_BATCH_SIZE under load, "
                "small when traffic is light (the batch window closes first).",
                "short",
                [(":crmsync_processor_batch_size:mean_rate5m", "events per batch")],
            ),
            Panel(
                "Apply retries",
                "Batches retried per second because PostgreSQL was unavailable; the batch "
                "waits rather than being skipped.",
                "ops",
                [(":crmsync_processor_apply_retries:rate5m", "retries")],
            ),
            Panel(
                "Outbox published",
                "Committed changes published to records.changed per second by the outbox "
                "relay (one relay at a time holds the lock; the others stand by).",
                "ops",
                [(":crmsync_processor_outbox_published:rate5m", "published")],
            ),
            Panel(
                "Outbox lag",
                "Age of the oldest committed change not yet on records.changed. Near 0: "
                "the relay is woken by NOTIFY. Over 60 s for 5 minutes fires "
                "CrmsyncOutboxLagHigh.",
                "s",
                [(":crmsync_processor_outbox_lag_seconds:max", "oldest unpublished")],
            ),
            Panel(
                "Webhook items by provider and outcome",
                "Record changes found in provider webhooks per second: normalized (passed "
                "on), duplicate, ignored (events we do not sync), gone (deleted at the "
                "provider meanwhile), hydrate_failed.",
                "ops",
                [
                    (
                        "provider_outcome:crmsync_processor_webhook_items:rate5m",
                        "{{provider}} {{outcome}}",
                    )
                ],
            ),
            Panel(
                "Hydrations by provider and outcome",
                "Thin-webhook records (Xero, QuickBooks, HubSpot) fetched from the provider's "
                "API per second: fetched, not_found, failed (the envelope is dead-lettered "
                "at stage hydrate).",
                "ops",
                [
                    (
                        "provider_outcome:crmsync_processor_hydrations:rate5m",
                        "{{provider}} {{outcome}}",
                    )
                ],
            ),
            Panel(
                "Consumer lag of the processor's topics",
                "Messages not yet committed on webhooks.raw, changes.internal and "
                "changes.normalized, per consumer group.",
                "short",
                [
                    (
                        "group_topic:crmsync_kafka_consumer_lag:sum"
                        '{topic=~".*(webhooks[.]raw|changes[.]internal|changes[.]normalized)"}',
                        "{{group}} {{topic}}",
                    )
                ],
            ),
        ],
    )


def outbound() -> dict[str, Any]:
    p = f'provider=~"${PROVIDER_VARIABLE}"'
    return dashboard(
        "crmsync-outbound",
        "crmsync / Outbound",
        "Pushes to each connected system, per provider: outcomes, committed -> pushed "
        "latency, retries, rate limits, circuit breakers, OAuth2 tokens and the push queue.",
        [
            Panel(
                "Pushes by provider and outcome",
                "Push attempts per second: succeeded (acknowledged by the provider) or "
                "failed (retried with backoff, dead-lettered after "
                "CRMSYNC_OUTBOUND_MAX_ATTEMPTS).",
                "ops",
                [
                    (
                        f"provider_outcome:crmsync_outbound_pushes:rate5m{{{p}}}",
                        "{{provider}} {{outcome}}",
                    )
                ],
                stack=True,
            ),
            Panel(
                "Pushes by provider and status class",
                "Push attempts per second by the provider's answer: 2xx, 4xx (429 is rate "
                "limiting), 5xx, none (timeout or connection refused).",
                "ops",
                [
                    (
                        f"provider_status_class:crmsync_outbound_pushes:rate5m{{{p}}}",
                        "{{provider}} {{status_class}}",
                    )
                ],
                stack=True,
            ),
            Panel(
                "Push failure ratio by provider",
                "Share of push attempts that failed, per provider.",
                "percentunit",
                [
                    (
                        f"provider:crmsync_outbound_pushes:failure_ratio_rate5m{{{p}}}",
                        "{{provider}}",
                    )
                ],
            ),
            Panel(
                "Committed -> pushed p50 / p99 by provider",
                "From a change committed in PostgreSQL to the provider acknowledging its "
                "push, retries and rate-limit waits included. SLO: p99 under 5 s per "
                "provider; over it for 10 minutes fires CrmsyncPushLatencySLO.",
                "s",
                [
                    (
                        f"provider:crmsync_outbound_committed_to_pushed_seconds:p50_rate5m{{{p}}}",
                        "{{provider}} p50",
                    ),
                    (
                        f"provider:crmsync_outbound_committed_to_pushed_seconds:p99_rate5m{{{p}}}",
                        "{{provider}} p99",
                    ),
                ],
            ),
            Panel(
                "Push attempt duration p99 by provider",
                "Time of one push attempt: the provider's API time plus any in-line wait "
                "for the connection's rate limit.",
                "s",
                [
                    (
                        f"provider:crmsync_outbound_push_duration_seconds:p99_rate5m{{{p}}}",
                        "{{provider}}",
                    )
                ],
            ),
            Panel(
                "Retries by provider and reason",
                "Pushes rescheduled per second: server_error, timeout, rate_limited (429), "
                "circuit_open, needs_reauth, dependency (waiting for a referenced record).",
                "ops",
                [
                    (
                        f"provider_reason:crmsync_outbound_retries:rate5m{{{p}}}",
                        "{{provider}} {{reason}}",
                    )
                ],
            ),
            Panel(
                "Dead letters by provider and reason",
                "Pushes given up per second: retries_exhausted, rejected by the provider "
                "(4xx), no_credentials, or a record the provider cannot express. Each is "
                "logged with its dead_letter_id.",
                "ops",
                [
                    (
                        f"provider_reason:crmsync_outbound_dead_letters:rate5m{{{p}}}",
                        "{{provider}} {{reason}}",
                    )
                ],
            ),
            Panel(
                "Rate-limit wait by provider",
                "Seconds per second that pushes spent waiting for a connection's rate limit "
                "(token bucket at the provider's documented limit). 1 means one push was "
                "always waiting.",
                "s",
                [
                    (
                        f"provider:crmsync_outbound_rate_limit_wait_seconds:rate5m{{{p}}}",
                        "{{provider}}",
                    )
                ],
            ),
            Panel(
                "Circuit state by provider",
                "Worst circuit breaker over the provider's connections: closed (calls go "
                "through), half-open (one probe), open (calls held back after most "
                "failed). Re-opening for 3 minutes fires CrmsyncCircuitOpen.",
                "none",
                [(f"provider:crmsync_outbound_circuit_state:max{{{p}}}", "{{provider}}")],
                kind="stat",
                width=8,
                thresholds=[(None, "green"), (1, "orange"), (2, "red")],
                mappings=CIRCUIT_MAPPINGS,
            ),
            Panel(
                "Connections needing re-authorisation",
                "Connections whose OAuth2 token refresh the provider refused; their pushes "
                "wait until the connection is authorised again. Any fires "
                "CrmsyncConnectionNeedsReauth.",
                "short",
                [
                    (
                        f"provider:crmsync_outbound_connections_needing_reauth:max{{{p}}}",
                        "{{provider}}",
                    )
                ],
                kind="stat",
                width=8,
                thresholds=[(None, "green"), (1, "red")],
            ),
            Panel(
                "OAuth2 token expiry by provider",
                "Least time left on an access token among the provider's connections; it "
                "is refreshed before it runs out, so it should never reach 0.",
                "s",
                [(f"provider:crmsync_outbound_token_expiry_seconds:min{{{p}}}", "{{provider}}")],
                kind="stat",
                width=8,
                thresholds=[(None, "red"), (60, "orange"), (300, "green")],
            ),
            Panel(
                "Push queue depth",
                "Pushes waiting in PostgreSQL (due now or backing off), over all providers.",
                "short",
                [(":crmsync_outbound_queue_depth:max", "waiting")],
            ),
            Panel(
                "Push queue lag",
                "Age of the oldest change still waiting to be pushed, over all providers.",
                "s",
                [(":crmsync_outbound_queue_lag_seconds:max", "oldest waiting")],
            ),
            Panel(
                "Pushes queued by entity type",
                "Pushes queued per second from records.changed (one per other connection "
                "of the tenant).",
                "ops",
                [("entity_type:crmsync_outbound_enqueued:rate5m", "{{entity_type}}")],
                stack=True,
            ),
            Panel(
                "Backfill and reconciliation runs in progress",
                "Sync runs (backfill, reconciliation) outbound is running now, summed over "
                "replicas; runs list a provider's records page by page within its rate "
                "limit, so pushes to it share that limit meanwhile.",
                "short",
                [("sum(crmsync_sync_runs_running)", "running")],
            ),
            Panel(
                "Consumer lag of records.changed",
                "Messages on records.changed outbound has not turned into queued pushes yet.",
                "short",
                [
                    (
                        'group_topic:crmsync_kafka_consumer_lag:sum{topic=~".*records[.]changed"}',
                        "{{group}}",
                    )
                ],
            ),
        ],
        variables=[_provider_variable()],
    )


def services() -> dict[str, Any]:
    return dashboard(
        "crmsync-services",
        "crmsync / Services",
        "Are the four crmsync services up, and how long Prometheus takes to scrape them.",
        [
            SERVICES_UP,
            Panel(
                "Scrape duration",
                "Seconds Prometheus needed to fetch each service's /metrics. Rising: a slow "
                "or overloaded service; near the 10 s scrape timeout, scrapes fail and the "
                "service shows DOWN.",
                "s",
                [('scrape_duration_seconds{job=~"crmsync-.*"}', "{{service}} {{instance}}")],
                width=24,
            ),
            Panel(
                "Build",
                "Version of each running service (crmsync_build_info): replicas on "
                "different versions show up here during a rollout.",
                "none",
                [("crmsync_build_info", "{{service}} {{version}} {{instance}}")],
                kind="stat",
                width=24,
                height=4,
            ),
        ],
    )


DASHBOARDS = {
    "overview.json": overview,
    "ingest.json": ingest,
    "processor.json": processor,
    "outbound.json": outbound,
    "services.json": services,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    for name, build in DASHBOARDS.items():
        (DASHBOARDS_DIR / name).write_text(render(build))
        print(f"wrote {DASHBOARDS_DIR / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
