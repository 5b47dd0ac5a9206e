"""The environment of a service process that a benchmark or the fault suite starts on
this machine, against a stack of its own."""

from __future__ import annotations

import os
from pathlib import Path


def service_env(
    database_url: str,
    bootstrap_servers: str,
    master_keys: str,
    state_dir: Path,
    log_level: str,
    /,
    **extra: object,
) -> dict[str, str]:
    """The caller's environment without its ``CRMSYNC_`` settings (they point at the shared
    stack: none may leak in), then this stack's, then ``extra``: more settings by field
    name (``CRMSYNC_`` + the name upper-cased), which may replace any of the above."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    return (
        base
        | {
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "CRMSYNC_MASTER_KEYS": master_keys,
            "CRMSYNC_LOG_FORMAT": "json",
            "CRMSYNC_LOG_LEVEL": log_level,
            "CRMSYNC_STATE_DIR": str(state_dir),
            # The simulated CRMs listen on 127.0.0.1 (DESIGN invariant 12): provider calls
            # to them must be let through.
            "CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS": "true",
        }
        | {f"CRMSYNC_{k.upper()}": str(v) for k, v in extra.items()}
    )
