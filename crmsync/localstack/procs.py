"""Service processes that a benchmark or the fault suite starts on this machine, against
a stack of its own: their environment, waiting until one is ready, stopping one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp


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


async def until_ready(
    session: aiohttp.ClientSession,
    url: str,
    proc: subprocess.Popen[bytes] | None,
    *,
    name: str,
    within: float,
    pause: float,
    error: Callable[[str], Exception],
    log_tail: Callable[[], str],
) -> None:
    """Poll the service's readiness ``url`` every ``pause`` seconds until it answers 200;
    ``error`` (with the log's tail) when the process exits first or ``within`` runs out."""
    deadline = time.monotonic() + within
    last: object = None
    while time.monotonic() < deadline:
        if proc is None or proc.poll() is not None:
            code = proc.returncode if proc else None
            raise error(f"{name} exited with {code} before it was ready:\n{log_tail()}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
                last = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(pause)
    raise error(f"{name} not ready after {within:g}s: {last}\n{log_tail()}")


async def reap(proc: subprocess.Popen[bytes], sig: int, within: float) -> int:
    """Send ``sig`` to the process if it still runs and wait for it, SIGKILL after
    ``within`` seconds; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            await asyncio.to_thread(proc.wait, within)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
    return proc.returncode
