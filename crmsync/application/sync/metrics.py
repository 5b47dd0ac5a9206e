"""Metrics of backfills and reconciliation runs (exported by the outbound service, which
runs them; a CLI run counts in its own process only). Labels: provider and kind."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RUNS = Counter(
    "crmsync_sync_runs_total",
    "Backfill and reconciliation runs ended, by provider, kind and status.",
    ["provider", "kind", "status"],
)
RECORDS = Counter(
    "crmsync_sync_records_total",
    "Records listed by backfill and reconciliation runs, by provider, kind and outcome "
    "(listed, changed, deleted).",
    ["provider", "kind", "outcome"],
)
RUNNING = Gauge("crmsync_sync_runs_running", "Runs in progress in this process.")
