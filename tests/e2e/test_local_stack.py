"""`crmsync infra` on a stack of its own: own ports, own Kafka data, own Postgres cluster.

The suite's shared stack is left alone; this one starts stopped, so `infra up` is tested
from nothing, and is purged afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest

from crmsync.common.kafka import make_consumer, make_producer
from crmsync.localstack.ports import free_port
from schemas import topics

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
# A password psql must quote correctly: a quote, a backslash, a space.
PASSWORD = "pa's\\s word"


def crmsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRMSYNC, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "CRMSYNC_STATE_DIR": str(tmp_path / "state"),
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "CRMSYNC_KAFKA_CONTROLLER_PORT": str(free_port()),
        "CRMSYNC_DATABASE_URL": (
            f"postgresql://stack_{suffix}:{quote(PASSWORD, safe='')}"
            f"@127.0.0.1:{free_port()}/stack_{suffix}"
        ),
        "CRMSYNC_PG_CLUSTER": f"crmsync_test_{suffix}",
    }
    yield env
    crmsync(env, "infra", "down", "--purge")


def _status(env: dict[str, str]) -> tuple[int, dict[str, bool]]:
    result = crmsync(env, "infra", "status", "--json")
    doc = json.loads(result.stdout)
    return result.returncode, {c["name"]: c["healthy"] for c in doc["components"]}


@pytest.mark.stack
async def test_infra_up_from_stopped_then_everything_works(stack_env: dict[str, str]) -> None:
    code, health = _status(stack_env)
    assert code == 1
    assert health == {"postgres": False, "kafka": False}

    up = crmsync(stack_env, "infra", "up")
    assert up.returncode == 0, up.stderr

    code, health = _status(stack_env)
    assert code == 0
    assert health == {"postgres": True, "kafka": True}

    # Kafka: the pipeline topics exist, and a record produced comes back.
    bootstrap = stack_env["CRMSYNC_KAFKA_BOOTSTRAP_SERVERS"]
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.WEBHOOKS_RAW.name, b"hello", key=b"conn-1")
    finally:
        await producer.stop()
    consumer = make_consumer(bootstrap, topics.WEBHOOKS_RAW.name, group_id="stack-test")
    await consumer.start()
    try:
        record = await consumer.getone()
    finally:
        await consumer.stop()
    assert (record.key, record.value) == (b"conn-1", b"hello")

    # Postgres: the provisioned role (with its awkward password) writes and reads.
    conn = await asyncpg.connect(stack_env["CRMSYNC_DATABASE_URL"])
    try:
        await conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
        await conn.execute("INSERT INTO probe VALUES (1, 'written')")
        assert await conn.fetchval("SELECT note FROM probe WHERE id = 1") == "written"
    finally:
        await conn.close()

    first = crmsync(stack_env, "migrate", "--json")
    second = crmsync(stack_env, "migrate", "--json")
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout)["applied"]
    assert json.loads(second.stdout) == {
        "applied": [],
        "already_applied": len(json.loads(first.stdout)["applied"]),
    }

    again = crmsync(stack_env, "infra", "up")
    assert again.returncode == 0, again.stderr
    assert "kafka: already running" in again.stderr

    down = crmsync(stack_env, "infra", "down")
    assert down.returncode == 0, down.stderr
    code, health = _status(stack_env)
    assert code == 1
    assert health == {"postgres": False, "kafka": False}
