"""Dedup rows outlive every record a replay or a redelivery can read again: the
processor refuses to start otherwise, naming the variable and the topic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crmsync.common.kafka import TopicConfig, ensure_topics, make_admin, record_lifetimes
from crmsync.localstack.ports import free_port
from services.processor.housekeeping import dedup_retention_problem
from tests.conftest import started

DAY = 86_400.0


def _refused(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, **env: str
) -> str:
    """``python -m services.processor`` on this test's stack, ``env`` added: it must refuse
    to start as a configuration error does (status 2, no traceback). Its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "services.processor"],
        env={
            **os.environ,
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "CRMSYNC_KAFKA_TOPIC_PREFIX": topic_prefix,
            "CRMSYNC_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
            "CRMSYNC_PROCESSOR_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_a_retention_longer_than_every_topic_is_fine() -> None:
    assert dedup_retention_problem(15, {"webhooks.raw": 14 * DAY, "changes.internal": DAY}) is None


def test_a_retention_within_a_topics_lifetime_names_the_topic() -> None:
    problem = dedup_retention_problem(7, {"webhooks.raw": 14 * DAY, "changes.internal": DAY})
    assert problem is not None
    assert "webhooks.raw" in problem
    assert "14 days" in problem


def test_a_topic_that_keeps_records_for_ever_is_refused() -> None:
    problem = dedup_retention_problem(365, {"webhooks.raw": None})
    assert problem is not None
    assert "for ever" in problem


async def test_lifetime_is_retention_plus_the_segment_roll(kafka_bootstrap: str) -> None:
    name = f"lifetime-{os.getpid()}-{free_port()}"
    async with started(make_admin(kafka_bootstrap)) as admin:
        try:
            await ensure_topics(
                admin,
                [
                    TopicConfig(
                        name,
                        1,
                        config=(("retention.ms", str(2 * 86_400_000)), ("segment.ms", "3600000")),
                    )
                ],
            )
            lifetimes = await record_lifetimes(admin, [name, f"{name}-missing"])
            assert lifetimes == {name: 2 * DAY + 3600}
        finally:
            await admin.delete_topics([name])


def test_the_processor_refuses_to_start_when_dedup_rows_expire_first(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # The local broker keeps records 7 days plus up to 7 of segment roll: 7 days of dedup
    # rows (the old default) let a replay apply week-old events a second time.
    stderr = _refused(
        database_url,
        kafka_bootstrap,
        topic_prefix,
        tmp_path,
        CRMSYNC_PROCESSOR_DEDUP_RETENTION_DAYS="7",
    )
    assert "CRMSYNC_PROCESSOR_DEDUP_RETENTION_DAYS" in stderr
    assert topic_prefix in stderr  # names the topic whose records outlive the rows


def test_the_processor_exits_2_naming_a_master_key_ring_it_cannot_read(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # The ring is parsed when faust's app is built, after the retention check passed.
    stderr = _refused(
        database_url, kafka_bootstrap, topic_prefix, tmp_path, CRMSYNC_MASTER_KEYS="not-a-key-ring"
    )
    assert "CRMSYNC_MASTER_KEYS" in stderr
