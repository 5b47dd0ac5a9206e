"""Backfills and reconciliation: provider list APIs feeding the pipeline, checkpointed."""
