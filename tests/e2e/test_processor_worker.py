from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

from crmsync.common.kafka import make_admin
from crmsync.localstack.ports import free_port
from tests.conftest import TopicFactory, started
from tests.e2e.helpers import get_json, produce_numbers, stop, wait_until_ready


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


async def test_processor_worker_batches_every_record_and_commits(
    kafka_bootstrap: str, database_url: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("faust-probe", partitions=2)
    await produce_numbers(kafka_bootstrap, topic, 1000, keys=17)

    app_id = f"crmsync-probe-{uuid.uuid4().hex[:8]}"
    port = free_port()
    out = tmp_path / "count"
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRMSYNC_PROCESSOR_APP_ID": app_id,
        "CRMSYNC_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        "CRMSYNC_PROCESSOR_PORT": str(port),
        "PROBE_TOPIC": topic,
        "PROBE_OUT": str(out),
    }
    proc = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "tests.e2e.faust_probe"], env=env
    )
    try:
        await asyncio.to_thread(wait_until_ready, f"http://127.0.0.1:{port}/readyz", proc)
        for _ in range(300):  # 60 s: the agent writes its running total after each batch
            if _read(out) == "1000\n":
                break
            await asyncio.sleep(0.2)
        assert _read(out) == "1000\n", "the agent did not receive every record"
        status, body = await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/readyz")
        assert status == 200, body
    finally:
        code = await asyncio.to_thread(stop, proc)
    assert code == 0

    async with started(make_admin(kafka_bootstrap)) as admin:
        offsets = await admin.list_consumer_group_offsets(app_id)
    committed = sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)
    assert committed == 1000
