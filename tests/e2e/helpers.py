from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from crmsync.common.kafka import make_producer
from tests.conftest import started


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - test-local URL
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def wait_until_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            status, body = get_json(url)
            if status == 200:
                return
            last = body
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {timeout}s: {last}")


def stop(
    proc: subprocess.Popen[bytes], sig: int | None = signal.SIGTERM, timeout: float = 30.0
) -> int:
    """Signal the process (None: it was signalled already) and return its exit status;
    kill it, and fail, if it does not exit in time."""
    if sig is not None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process ignored signal {sig} for {timeout}s") from None


async def produce_numbers(kafka_bootstrap: str, topic: str, count: int, keys: int) -> None:
    """Records ``0`` to ``count - 1`` (their values) on ``topic``, keyed ``k0`` to
    ``k{keys - 1}`` in turn, so they spread over its partitions; all acknowledged."""
    async with started(make_producer(kafka_bootstrap)) as producer:
        for i in range(count):
            await producer.send(topic, f"{i}".encode(), key=f"k{i % keys}".encode())
        await producer.flush()
