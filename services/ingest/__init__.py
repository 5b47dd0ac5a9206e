"""Ingest: the HTTP front door for provider webhooks and internal change events."""
