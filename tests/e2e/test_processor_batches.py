"""A batch an agent did not finish is never acknowledged: after the agent fails (or the
worker stops) mid-batch, the next worker of the group handles it. And a lone event is
handed over once the stream is quiet, not after the batch window.

faust's own ``take_events`` acknowledges the batch in a ``finally`` when the agent
raises; with it this test loses the failed batch (run it with PROBE_TAKE=faust to see).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from crmsync.common.kafka import make_producer
from crmsync.localstack.ports import free_port
from tests.conftest import TopicFactory
from tests.e2e.helpers import produce_numbers, stop, wait_until_ready

RECORDS = 600


def handled(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def settle(path: Path, *, want: int, quiet_seconds: float = 3.0, within: float = 60) -> None:
    """Until ``path`` holds ``want`` distinct values, or stops growing for a while."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last, since = -1, loop.time()
    while loop.time() < deadline:
        lines = handled(path)
        if len(set(lines)) >= want:
            return
        if len(lines) != last:
            last, since = len(lines), loop.time()
        elif loop.time() - since >= quiet_seconds and last > 0:
            return
        await asyncio.sleep(0.2)


def probe_env(
    kafka_bootstrap: str, database_url: str, topic: str, out: Path, tmp_path: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRMSYNC_PROCESSOR_APP_ID": f"crmsync-crash-probe-{uuid.uuid4().hex[:8]}",
        # The processor's own agents listen to topics nobody writes to.
        "CRMSYNC_KAFKA_TOPIC_PREFIX": f"probe-{uuid.uuid4().hex[:8]}.",
        "CRMSYNC_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        "PROBE_TOPIC": topic,
        "PROBE_OUT": str(out),
        "PROBE_TAKE": os.environ.get("PROBE_TAKE", "batches"),
    }


async def run_worker(env: dict[str, str], port: int, out: Path, want: int) -> None:
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.e2e.faust_crash_probe"],
        env={**env, "CRMSYNC_PROCESSOR_PORT": str(port)},
    )
    try:
        # /healthz: the pipeline's own topics (prefixed, unused) do not exist, so never ready.
        await asyncio.to_thread(wait_until_ready, f"http://127.0.0.1:{port}/healthz", proc)
        await settle(out, want=want)
    finally:
        code = await asyncio.to_thread(stop, proc)
    assert code == 0


async def test_a_batch_the_agent_failed_is_handled_by_the_next_worker(
    kafka_bootstrap: str, database_url: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("crash-probe", partitions=2)
    await produce_numbers(kafka_bootstrap, topic, RECORDS, keys=13)

    out = tmp_path / "handled"
    env = probe_env(kafka_bootstrap, database_url, topic, out, tmp_path)
    # The first worker's agent fails once, on the batch holding record 300.
    await run_worker({**env, "PROBE_FAIL_AT": "300"}, free_port(), out, RECORDS)
    first = set(handled(out))
    assert "300" not in first, "the failing batch was handled after all"
    # The next worker of the group starts from the committed offsets.
    await run_worker(env, free_port(), out, RECORDS)
    missing = {str(i) for i in range(RECORDS)} - set(handled(out))
    assert missing == set(), f"{len(missing)} records acknowledged but never handled"


async def test_a_lone_event_is_handed_over_when_the_stream_is_quiet_not_after_the_window(
    kafka_bootstrap: str, database_url: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("quiet-probe", partitions=1)
    out = tmp_path / "handled"
    # A window far longer than the test may wait: only the quiet rule can hand events over.
    env = {
        **probe_env(kafka_bootstrap, database_url, topic, out, tmp_path),
        "PROBE_WITHIN": "300",
        "PROBE_QUIET": "0.005",
    }
    port = free_port()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.e2e.faust_crash_probe"],
        env={**env, "CRMSYNC_PROCESSOR_PORT": str(port)},
    )
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        await asyncio.to_thread(wait_until_ready, f"http://127.0.0.1:{port}/healthz", proc)
        # One event, then another once the first was handled: a fixed window restarted
        # after the first batch would hold the second for the whole window.
        for value in ("first", "second"):
            await producer.send_and_wait(topic, value.encode(), key=b"k")
            await settle(out, want=1 + (value == "second"), quiet_seconds=120, within=120)
            assert value in handled(out), f"{value!r} still waits for its batch window"
    finally:
        await producer.stop()
        code = await asyncio.to_thread(stop, proc)
    assert code == 0
