"""The local stack's master key: generated once into a git-ignored file, mode 0600.

Production deployments set CRMSYNC_MASTER_KEYS from their secret store instead; this file
exists so `./scripts/demo` works on a fresh machine without anyone inventing a key.
"""

from __future__ import annotations

import os
from pathlib import Path

from crmsync.common.crypto import generate_master_key
from crmsync.localstack.settings import LocalStackSettings

ENV = "CRMSYNC_MASTER_KEYS"


def key_file(settings: LocalStackSettings) -> Path:
    return settings.state_dir / "master.key"


def ensure_master_key(settings: LocalStackSettings) -> bool:
    """Create the key file if missing; True when it was created now."""
    path = key_file(settings)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(generate_master_key() + "\n")
    return True


def export_master_key(settings: LocalStackSettings) -> None:
    """Put the local key into this process's environment (children inherit it), unless
    CRMSYNC_MASTER_KEYS is set already: an explicit setting always wins."""
    path = key_file(settings)
    if ENV not in os.environ and path.exists():
        os.environ[ENV] = path.read_text().strip()
